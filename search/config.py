"""Typed experiment config, validated once at the edge (YAML -> frozen dataclasses).

Errors name the field path (``generation.top_p``) and what is allowed. Layers below receive these typed
objects (or the steering layer's own types), never dicts.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from objectives.bertscore import ScorerSpec
from objectives.compose import ObjectiveSpec
from objectives.gold import yaml_problem
from search.adversarial import AdversarialSpec
from search.distill import DistillSpec
from search.length import LengthSpec
from search.objective import FidelitySpec
from search.space import PairsSpec, SpaceSpec
from steering import GenerationConfig


class ConfigError(ValueError):
    """A config file or value a user wrote is invalid; the message names the field."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model: ``source`` is null for the embedded tiny-topics model, a local directory, or an HF name."""

    source: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


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


@dataclass(frozen=True)
class DataSpec:
    """Text files (``configs/gold/`` format). In a config file a relative path is relative to the config
    file's folder (``gold/weddings.yaml`` beside ``configs/quickstart.yaml``); ``load_config`` makes them
    absolute. Defaults: the shipped weddings gold set and the shipped prompt, neutral and off-target sets."""

    gold: str = str(shipped_file("gold/weddings.yaml"))
    prompts: str = str(shipped_file("gold/prompts.yaml"))
    neutral: str = str(shipped_file("gold/neutral.yaml"))
    off_target: str = str(shipped_file("gold/off_target.yaml"))


@dataclass(frozen=True)
class BaselineSpec:
    """A hand-written intervention: enqueued as one of the first trials, and a row of every comparison."""

    pair: tuple[str, str]
    layer: int
    coeff: float
    frac: float = 1.0
    mask: Literal["first", "random"] = "first"
    positions: str = "front"


@dataclass(frozen=True)
class StudySpec:
    """The study: sampler, pruner, budget, storage, seed, and how dead workers' trials are found.

    ``heartbeat_interval``/``grace_period`` (seconds): RDB storages (SQLite, PostgreSQL) fail a RUNNING trial
    whose worker sent no heartbeat for ``grace_period`` and retry it with the same parameters, at most
    ``max_retry`` times. Journal storage has no heartbeat: a RUNNING trial there is stale when its worker
    process on this host is gone, or after ``stale_after`` seconds (see ``search.workers``)."""

    sampler: Literal["tpe", "cmaes", "gp", "nsga2", "grid", "random"] = "tpe"
    pruner: Literal["none", "median", "halving", "hyperband"] = "median"
    n_trials: int = 20
    timeout: float | None = None
    storage: str | None = None  # default: sqlite:///runs/<name>/study.db
    seed: int = 0
    heartbeat_interval: int = 10
    grace_period: int = 60
    max_retry: int = 2
    stale_after: float = 21600.0

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise ValueError("heartbeat_interval must be >= 1 and grace_period above it")
        if self.max_retry < 0 or self.stale_after <= 0:
            raise ValueError("max_retry must be >= 0 and stale_after > 0")


@dataclass(frozen=True)
class CompareSpec:
    """The held-out comparison: samples per held-out prompt, held-out seed, bootstrap resamples, the
    prompting baseline's instruction prefix (default: "Let me tell you about <gold name>. "), how many
    best trials, and whether to add the best trial of each candidate source."""

    n: int = 8
    seed: int = 1000
    bootstrap: int = 1000
    prefix: str | None = None
    max_best: int = 3
    per_source: bool = True  # also the best trial of each candidate source (template, adversarial, learned...)

    def __post_init__(self) -> None:
        for name, least in (("n", 1), ("bootstrap", 10), ("max_best", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    pairs: PairsSpec | None = None  # required by `run`
    baselines: tuple[BaselineSpec, ...] = ()
    space: SpaceSpec = field(default_factory=SpaceSpec)
    fidelity: FidelitySpec = field(default_factory=FidelitySpec)
    study: StudySpec = field(default_factory=StudySpec)
    compare: CompareSpec = field(default_factory=CompareSpec)
    adversarial: AdversarialSpec | None = None  # GCG-mutate the baselines' pairs before the study
    distill: DistillSpec | None = None  # `steersearch analyze`: short pairs matching target vectors
    length: LengthSpec | None = None  # `steersearch analyze`: pair length vs strength

    def __post_init__(self) -> None:
        if self.adversarial is not None and not self.baselines:
            raise ValueError("adversarial: needs baselines (the hand-written pairs it mutates)")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be a plain folder name")


T = TypeVar("T")


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


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types by field path."""
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)  # YAML keys may be numbers
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(fields)}")
    required = [n for n, f in fields.items() if f.default is f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{where}: missing field {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # a dataclass's own value checks
        raise ConfigError(_at(path, str(err), fields)) from err


def _at(path: str, message: str, fields: typing.Iterable[str]) -> str:
    """A section's own check, placed: ``frac must lie in ...`` from ``space`` becomes ``space.frac must lie in
    ...`` when the message starts with one of the section's fields, else ``space: <message>``."""
    head = re.match(r"\w+", message)
    if path and head and head.group() in fields and message[head.end() : head.end() + 1] in (" ", ".", ":", "="):
        return f"{path}.{message}"
    return f"{path or 'config'}: {message}"


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in (o for o in options if o is not type(None)):
            try:
                return _coerce(opt, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {tp}")
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        fixed = origin is tuple and Ellipsis not in args
        if fixed and len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
        items = [_coerce(args[i] if fixed else args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value
