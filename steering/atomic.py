"""Atomic file writes that concurrent writers cannot break.

Each write goes to a temporary file with a unique name in the target's own folder (so the rename stays on
one filesystem) and is then renamed over the target with ``os.replace``. Two processes writing the same
path never share a temporary name: whichever renames last wins, and neither sees the other's half-written
file or loses its temporary file to the other's rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a fresh unique temporary path beside ``path``, then rename it to ``path``.

    Example:
        >>> atomic_write("out/x.bin", lambda tmp: tmp.write_bytes(b"..."))
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
