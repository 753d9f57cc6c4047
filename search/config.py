"""Typed experiment config, validated once at the edge (YAML -> frozen dataclasses).

Errors name the field path (``generation.top_p``) and what is allowed. Layers below receive these typed
objects (or the steering layer's own types), never dicts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from objectives.bertscore import ScorerSpec
from objectives.compose import ObjectiveSpec
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


@dataclass(frozen=True)
class DataSpec:
    """Text files (``configs/gold/`` format), relative to the working directory."""

    gold: str = "configs/gold/weddings.yaml"
    prompts: str = "configs/gold/prompts.yaml"
    neutral: str = "configs/gold/neutral.yaml"
    off_target: str = "configs/gold/off_target.yaml"


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
        if self.n < 1 or self.bootstrap < 10 or self.max_best < 1:
            raise ValueError("compare needs n >= 1, bootstrap >= 10 and max_best >= 1")


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
    """Read and validate a YAML experiment config.

    Example:
        >>> cfg = load_config("configs/quickstart.yaml")
        >>> cfg.generation.top_p
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {err}") from err
    return from_dict(ExperimentConfig, data if data is not None else {})


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types by field path."""
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # a dataclass's own value checks
        raise ConfigError(f"{where}: {err}") from err


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
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value
