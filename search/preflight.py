"""Checks a run makes before it writes anything: every file the config names exists (and the fit's suppress
set parses), the run folder and a local storage file can be written, a remote storage can be opened. Each
failure is one line, and the run folder is left as it was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from objectives import load_gold_set
from search.config import ConfigError, ExperimentConfig, check_files
from search.study import StorageError, storage_for


class PreflightError(ValueError):
    """Something the run would fail on, found before it wrote anything; the message is one line."""


def preflight(cfg: ExperimentConfig, out: Path, storage: str | None, *, what: str = "run folder") -> None:
    """Every check below, in the order a user would fix them; ``what`` names the run folder in messages."""
    check_config_files(cfg)
    check_writable(out, what, folder=True)
    check_storage(storage, out, cfg)


def check_writable(path: Path, what: str, *, folder: bool) -> None:
    """Refuse, in one line, a folder (``folder``) or file that cannot be written, creating nothing: an
    existing one must be of the right kind and writable; otherwise a file must be creatable in its nearest
    existing ancestor (tried with an unnamed temporary file, since root passes every ``os.access`` check)."""
    if path.exists():
        if path.is_dir() != folder:
            raise PreflightError(f"{what} {path} is {'a file, not a folder' if folder else 'a folder, not a file'}")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise PreflightError(f"{what} {path} is not writable")
        return
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise PreflightError(f"{what} {path}: {parent} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise PreflightError(f"{what} {path}: cannot create files in {parent} ({err.strerror or err})") from err


def check_config_files(cfg: ExperimentConfig) -> None:
    """Every file the config names exists, and the fit's suppress set parses (the run reads it only after
    it has started writing the run folder)."""
    check_files(cfg)
    if cfg.space.learned.suppress:
        try:
            load_gold_set(cfg.space.learned.suppress)
        except (OSError, ValueError) as err:
            raise ConfigError(f"space.learned.suppress: {err}") from err


def check_storage(url: str | None, out: Path, cfg: ExperimentConfig) -> None:
    """Open the run's storage before anything is written, so a bad URL, a missing driver or an unreachable
    server fails in one line (``StorageError``) with the run folder untouched. A local file (``journal:PATH``,
    ``sqlite:///PATH``) is only checked to be writable, not created."""
    if url is None:
        return  # study.db in the run folder
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            try:
                check_writable(Path(url.removeprefix(prefix)), "storage file", folder=False)
            except PreflightError as err:
                raise StorageError(f"storage {url}: {err}") from err
            return
    storage_for(url, out, cfg.study)
