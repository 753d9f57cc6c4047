"""Reading a config file: YAML in, a validated ``ExperimentConfig`` out, with the file paths it names made
absolute relative to the config file; and finding a config by path or by shipped name."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from objectives.gold import yaml_problem
from search.config.experiment import ExperimentConfig
from search.config.shipped import shipped_configs, shipped_file
from search.config.typed import ConfigError, from_dict


def find_config(arg: str | Path, what: str = "config") -> Path:
    """The config file ``arg`` names: an existing file, else a shipped config by bare name (``quickstart``
    or ``quickstart.yaml``). ``what`` names the argument in the one-line error (``--config``)."""
    p = Path(arg)
    if p.is_file():
        return p
    name = str(arg).removesuffix(".yaml")
    if str(arg) == p.name and name in shipped_configs():  # a bare name, not a path
        return shipped_file(f"{name}.yaml")
    shipped = ", ".join(shipped_configs())
    raise ConfigError(f"{what} {str(arg)!r}: no such file, and no shipped config of that name; shipped: {shipped}")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config; its relative file paths become absolute, relative to
    the config file's folder (see ``resolve_paths``), so the config works from any working directory.

    Example:
        >>> cfg = load_config("configs/quickstart.yaml")  # or load_config(find_config("quickstart"))
        >>> cfg.generation.top_p
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {err}") from err
    except yaml.YAMLError as err:  # a `!!python/...` tag lands here too: safe_load never builds objects
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {yaml_problem(err)}") from err
    return resolve_paths(from_dict(ExperimentConfig, data if data is not None else {}), p.resolve().parent)


FILE_FIELDS = (
    "data.gold",
    "data.prompts",
    "data.neutral",
    "data.off_target",
    "space.learned.suppress",
    "scorer.baseline_path",
)
"""Fields that name a file: a relative path is relative to the config file's folder."""

NAME_OR_PATH_FIELDS = ("model.source", "scorer.model")
"""A hub name or a local directory: relative to the config's folder only when written ``./x`` or ``../x``
(a plain ``x`` stays as written: a hub name, or a directory relative to the working directory)."""


def check_files(cfg: ExperimentConfig) -> None:
    """Raise ``ConfigError`` naming the field when a file the config names (``FILE_FIELDS``), or a scorer
    model given as a path, does not exist: `run` checks this before it writes anything."""
    for dotted in (*FILE_FIELDS, "scorer.model"):
        value: Any = cfg
        for name in dotted.split("."):
            value = getattr(value, name) if value is not None else None
        if not value or (dotted == "scorer.model" and not Path(value).expanduser().is_absolute()):
            continue  # absent, or a hub name
        if not Path(value).expanduser().exists() or (dotted != "scorer.model" and Path(value).is_dir()):
            raise ConfigError(f"{dotted}: file {value!r} does not exist")


def resolve_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """``cfg`` with each relative path in ``FILE_FIELDS`` (and explicitly relative ``NAME_OR_PATH_FIELDS``)
    made absolute against ``base``; absolute paths are kept, so a written-back config loads unchanged."""

    def absolute(value: str, explicit_only: bool) -> str:
        if explicit_only and not value.startswith(("./", "../")):
            return value
        p = Path(value).expanduser()
        return value if p.is_absolute() else os.path.normpath(base / p)

    def update(obj: Any, names: list[str], explicit_only: bool) -> Any:
        if obj is None:  # an optional section that is absent
            return obj
        value = getattr(obj, names[0])
        if len(names) > 1:
            new = update(value, names[1:], explicit_only)
        elif isinstance(value, str) and value:
            new = absolute(value, explicit_only)
        else:
            return obj
        return obj if new is value else dataclasses.replace(obj, **{names[0]: new})

    for dotted in FILE_FIELDS:
        cfg = update(cfg, dotted.split("."), explicit_only=False)
    for dotted in NAME_OR_PATH_FIELDS:
        cfg = update(cfg, dotted.split("."), explicit_only=True)
    return cfg
