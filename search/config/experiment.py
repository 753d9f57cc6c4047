"""The experiment config: one frozen dataclass per section of the YAML file. Each feature's own spec lives in
``search.config.space`` or ``search.config.features``; nothing here imports a feature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from objectives.bertscore import ScorerSpec
from objectives.compose import ObjectiveSpec
from search.config.features import AdversarialSpec, DistillSpec, FidelitySpec, LengthSpec, OvershootSpec
from search.config.shipped import shipped_file
from search.config.space import PairsSpec, SpaceSpec
from steering import GenerationConfig


@dataclass(frozen=True)
class ModelSpec:
    """Which model: ``source`` is null for the embedded tiny-topics model, a local directory, or an HF name."""

    source: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    bos_token: str | None = None  # the token that starts every sequence; default: the catalog's, else the tokenizer's
    prepend_bos: bool = True  # start every prompt with bos_token
    pad_token: str | None = None  # filler of left-padded batches (always masked); default: the BOS token
    prompt_format: Literal["plain", "chat"] = "plain"  # chat: each prompt is a user turn of the model's chat template


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
class TuneSpec:
    """How every hand-written pair is tuned on the search split, so that the search is compared with what a
    researcher would get by tuning the pair: each baseline's pair at every ``layers`` × ``coeffs`` point (and
    at the setting written for it) is enqueued as a trial of the study, counted in its budget and pruned like
    any other. The best complete one per pair is its tuned row in selection and comparison. Empty lists mean
    the baseline's own layer or coefficient only (no tuning)."""

    layers: tuple[int, ...] = ()
    coeffs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if any(layer < 0 for layer in self.layers):
            raise ValueError("tune.layers must be >= 0")
        if any(not c > 0 for c in self.coeffs):
            raise ValueError("tune.coeffs must be > 0")


@dataclass(frozen=True)
class SelectSpec:
    """Selection, a stage of its own between search and test: the ``top_k`` distinct best complete trials (by
    search value) and every tuned baseline are re-evaluated on the validation split (its prompts, passages,
    neutral text and off-target prompts, ``n`` samples per prompt, seed ``seed``); the best search candidate
    displaces the best tuned hand-written pair only if the paired 95% CI of their difference lies above 0."""

    top_k: int = 5
    n: int = 8
    seed: int = 2000

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n < 1:
            raise ValueError(f"select.top_k and select.n must be >= 1, got {self.top_k} and {self.n}")


@dataclass(frozen=True)
class StudySpec:
    """The study: sampler, pruner, budget, storage, seed, and how dead workers' trials are found.

    ``heartbeat_interval``/``grace_period`` (seconds): RDB storages (SQLite, PostgreSQL) fail a RUNNING trial
    whose worker sent no heartbeat for ``grace_period`` and retry it with the same parameters, at most
    ``max_retry`` times. Journal storage has no heartbeat: a RUNNING trial there is stale when its worker
    process on this host is gone, or after ``stale_after`` seconds (see ``search.workers``).

    ``batch``: trials a worker asks for at once and runs together, their completions generated and scored in
    shared forward passes (each trial's numbers are those it would get alone). 1 runs one trial at a time. The
    default, 4, is measured (README, "Trials in batches"): on one CPU thread it ran first-rung-sized trials
    (16 completions) 1.31-1.37x the trials per hour of 1 and full ones 1.02-1.04x, and whole 32-trial
    quickstart searches about even (0.97x and 1.12x in two runs), while 8 and 16 were slower there (0.84-0.90x),
    since batch-mates report a rung together and the median pruner compares with complete trials only."""

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
    batch: int = 4

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
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
    tune: TuneSpec = field(default_factory=TuneSpec)
    select: SelectSpec = field(default_factory=SelectSpec)
    compare: CompareSpec = field(default_factory=CompareSpec)
    adversarial: AdversarialSpec | None = None  # GCG-mutate the baselines' pairs before the study
    distill: DistillSpec | None = None  # `steersearch analyze`: short pairs matching target vectors
    length: LengthSpec | None = None  # `steersearch analyze`: pair length vs strength
    overshoot: OvershootSpec | None = None  # `steersearch analyze`: the frac x coefficient grid, masks first/random

    def __post_init__(self) -> None:
        if self.adversarial is not None and not self.baselines:
            raise ValueError("adversarial: needs baselines (the hand-written pairs it mutates)")
        seeds = {"generation.seed": self.generation.seed, "select.seed": self.select.seed}
        if self.compare.seed in seeds.values() or len(set(seeds.values())) < 2:
            raise ValueError(
                f"generation.seed, select.seed and compare.seed must differ (each split gets fresh random numbers), "
                f"got {self.generation.seed}, {self.select.seed}, {self.compare.seed}"
            )
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be a plain folder name")
