"""The search space as configured: ranges (``FloatRange``, ``IntRange``), the pair pool's recipe, learned-vector
fit ranges, and ``FitChoice`` (a learned vector's fit settings, as a trial or a distillation target picks
them). Plain data; ``search.space`` turns it into trial parameters and candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from steering import MaskMode, PositionMode, Positions

KINDS = ("pair", "learned")
INITS = ("zeros", "pair")


@dataclass(frozen=True)
class FloatRange:
    """A float dimension: a range (optionally log), or fixed ``values`` (a grid)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.values:
            if self.low is not None or self.high is not None:
                raise ValueError("give either values or low/high, not both")
            if not all(math.isfinite(v) for v in self.values):
                raise ValueError(f"values must be finite numbers, got {list(self.values)}")
            return
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or a list of values)")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"a range needs finite bounds, got low {self.low}, high {self.high}")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")

    @property
    def varies(self) -> bool:
        """Whether this dimension is a trial parameter (more than one possible value)."""
        return len(self.values) > 1 if self.values else self.low != self.high

    def contains(self, v: float) -> bool:
        """Whether a trial can take the value ``v``."""
        return v in self.values if self.values else self.low <= v <= self.high  # type: ignore[operator]


@dataclass(frozen=True)
class IntRange:
    low: int = 0
    high: int = 0

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")

    @property
    def varies(self) -> bool:
        return self.high > self.low

    def contains(self, v: int) -> bool:
        return self.low <= v <= self.high


@dataclass(frozen=True)
class PairsSpec:
    """Hand-written pairs, plus templates with ``{x}`` filled from ``words``, plus ``distilled`` pairs: short
    pairs that ``steersearch analyze`` distilled from a vector (its ``distill`` section), copied here so a search
    can weigh them against the rest (they join the pool with source ``distilled`` and are not tuned)."""

    hand_written: tuple[tuple[str, str], ...] = ()
    templates: tuple[tuple[str, str], ...] = ()
    words: tuple[str, ...] = ()
    distilled: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.hand_written and not (self.templates and self.words):
            raise ValueError("pairs needs hand_written pairs, or templates with words")
        for a, b in (*self.hand_written, *self.templates, *self.distilled):
            if not a and not b:
                raise ValueError("a pair needs at least one non-empty prompt")
        for a, b in self.templates:
            if "{x}" not in a + b:
                raise ValueError(f"template ({a!r}, {b!r}) has no {{x}} placeholder")


@dataclass(frozen=True)
class LearnedSpec:
    """Gradient-fitted vectors (``steering.fit``): the ranges the study searches, and fixed fit settings.

    ``init``: ``zeros`` (fit from scratch, added at ``positions``) and/or ``pair`` (fine-tune the trial's
    pair vector times its coefficient in place, at front positions). ``suppress``: a gold-set file whose
    search passages the fit makes less likely (optional).
    """

    lr: FloatRange = field(default_factory=lambda: FloatRange(0.01, 0.3, log=True))
    steps: IntRange = field(default_factory=lambda: IntRange(20, 80))
    norm_bound: FloatRange = field(default_factory=lambda: FloatRange(2.0, 50.0, log=True))
    init: tuple[str, ...] = ("zeros",)
    positions: str = "from:1"
    batch_size: int = 16
    norm_penalty: float = 0.0
    suppress: str | None = None
    suppress_weight: float = 1.0
    target_loss: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.init or any(i not in INITS for i in self.init):
            raise ValueError(f"init must list some of {', '.join(INITS)}, got {list(self.init)}")
        if Positions.parse(self.positions).mode is PositionMode.FRONT:
            raise ValueError("learned positions must be 'all' or 'from:K' (a fine-tuned pair keeps front itself)")
        for name, r in (("lr", self.lr), ("norm_bound", self.norm_bound)):
            if min(r.values or (r.low or 0.0,)) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.steps.low < 1:
            raise ValueError(f"steps.low must be >= 1, got {self.steps.low}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class SpaceSpec:
    layer: IntRange = field(default_factory=lambda: IntRange(0, 0))
    coeff: FloatRange = field(default_factory=lambda: FloatRange(1.0, 8.0))
    frac: FloatRange = field(default_factory=lambda: FloatRange(values=(1.0,)))
    masks: tuple[str, ...] = ("first",)
    positions: tuple[str, ...] = ("front",)
    n_additions: IntRange = field(default_factory=lambda: IntRange(1, 1))
    kinds: tuple[str, ...] = ("pair",)
    learned: LearnedSpec = field(default_factory=LearnedSpec)

    def __post_init__(self) -> None:
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds must list some of {', '.join(KINDS)}, got {list(self.kinds)}")
        masks = [m.value for m in MaskMode]
        for m in self.masks:
            if m not in masks:
                raise ValueError(f"masks: {m!r} is not a mask; allowed: {', '.join(masks)}")
        for p in self.positions:
            Positions.parse(p)  # its message starts "positions must be ..."
        for name in ("masks", "positions"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one entry")
        if self.n_additions.low < 1:
            raise ValueError("n_additions must be >= 1")
        if self.layer.low < 0:
            raise ValueError(f"layer.low must be >= 0, got {self.layer.low}")
        fracs = self.frac.values or (self.frac.low, self.frac.high)
        if not all(f is not None and 0 < f <= 1 for f in fracs):
            raise ValueError(f"frac must lie in (0, 1] (a fraction of residual dimensions), got {list(fracs)}")


@dataclass(frozen=True)
class FitChoice:
    """A learned vector's fit hyper-parameters, as a trial picked them."""

    lr: float
    steps: int
    norm_bound: float
    init: str = "zeros"
    positions: str = "from:1"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        front = Positions.parse(self.positions).mode is PositionMode.FRONT
        if front != (self.init == "pair"):
            raise ValueError("a fine-tuned pair is fitted at front positions; a vector from zeros at 'all'/'from:K'")
