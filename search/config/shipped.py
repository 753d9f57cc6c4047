"""The configs and gold sets shipped with steersearch: the repository's ``configs/`` folder, installed as the
package ``steersearch_configs`` (pyproject.toml's ``package-dir``), so they work from a wheel too."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SHIPPED_PACKAGE = "steersearch_configs"
"""The repository's ``configs/`` folder, installed as this package (pyproject.toml's ``package-dir``)."""


def shipped_file(name: str = "") -> Path:
    """A config or gold file shipped with steersearch, by its path inside ``configs/``.

    Works from the repository (editable install) and from an installed wheel alike; ``""`` is the folder.

    Example:
        >>> shipped_file("gold/weddings.yaml").is_file()
        True
    """
    try:
        root = Path(str(importlib.resources.files(SHIPPED_PACKAGE)))
    except ModuleNotFoundError:  # a source checkout on sys.path without an install
        root = Path(__file__).resolve().parents[1] / "configs"
    return root.joinpath(*name.split("/")) if name else root


def shipped_configs() -> list[str]:
    """Names of the shipped experiment configs (``quickstart``, ...), for ``steersearch run NAME``."""
    return sorted(p.stem for p in shipped_file().glob("*.yaml"))
