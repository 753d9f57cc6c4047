"""The search space: the only module that calls ``trial.suggest_*``.

A trial picks one or more additions; each addition picks a prompt pair from a pool, a layer, a
coefficient, a fraction of residual dimensions, a mask kind and a position mode. The pool holds the
hand-written pairs from the config plus pairs generated from templates and word lists. A ``Candidate`` is
plain data; turning it into tensors needs the model (``Candidate.steering``).

Two kinds of candidate share the space (``space.kinds``): ``pair`` (ActAdd on a pool pair) and ``learned``
(a vector fitted by gradient descent, whose fit hyper-parameters the trial picks; it may start from the
trial's pair vector). Adversarially mutated pairs enter the pool with ``source="adversarial"``. The pool
is fixed when a study is created (Optuna's categorical choices cannot change), and labels are stable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from steering import Addition, MaskMode, PositionMode, Positions, SteeringVector
from steering.model import SteerableModel

KINDS = ("pair", "learned")
INITS = ("zeros", "pair")


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    source: str = "hand-written"  # or "template", "adversarial"

    @property
    def label(self) -> str:
        return f"{self.a} || {self.b}"


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
    """Hand-written pairs, plus templates with ``{x}`` filled from ``words``."""

    hand_written: tuple[tuple[str, str], ...] = ()
    templates: tuple[tuple[str, str], ...] = ()
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.hand_written and not (self.templates and self.words):
            raise ValueError("pairs needs hand_written pairs, or templates with words")
        for a, b in (*self.hand_written, *self.templates):
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


def pair_pool(spec: PairsSpec) -> list[Pair]:
    """Hand-written pairs first, then template pairs; duplicates removed, order stable."""
    pool = [Pair(a, b, "hand-written") for a, b in spec.hand_written]
    pool += [Pair(ta.format(x=w), tb.format(x=w), "template") for ta, tb in spec.templates for w in spec.words]
    seen: set[str] = set()
    unique = []
    for p in pool:
        if p.label not in seen:
            seen.add(p.label)
            unique.append(p)
    return unique


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


@dataclass(frozen=True)
class AdditionChoice:
    """One addition. A pair addition adds ``coeff`` times the pair's vector. A learned one (``fit`` set) adds
    the fitted vector at coefficient 1; with ``init="pair"`` the fit starts from ``coeff`` times the pair's
    vector, otherwise ``pair`` is None."""

    pair: Pair | None
    layer: int
    coeff: float
    frac: float = 1.0
    mask: str = "first"
    positions: str = "front"
    fit: FitChoice | None = None

    def __post_init__(self) -> None:
        if self.pair is None and (self.fit is None or self.fit.init == "pair"):
            raise ValueError("a pair addition (or a learned one fine-tuning a pair) needs a pair")

    @property
    def kind(self) -> str:
        return "pair" if self.fit is None else "learned"

    @property
    def source(self) -> str:
        """Where the candidate came from: the pair's source, or ``learned``."""
        return "learned" if self.fit is not None else self.pair.source  # type: ignore[union-attr]

    def describe(self) -> str:
        if self.fit is None:
            assert self.pair is not None
            return f"{self.pair.a!r} / {self.pair.b!r} L{self.layer} c{self.coeff:.3g}"
        f = self.fit
        bound = f"norm<={f.norm_bound:.3g}"
        if self.pair is not None:
            return (
                f"learned L{self.layer} lr{f.lr:.3g} {f.steps} steps {bound} (or the start's) at {f.positions} "
                f"from {self.pair.a!r} / {self.pair.b!r} c{self.coeff:.3g}"
            )
        return f"learned L{self.layer} lr{f.lr:.3g} {f.steps} steps {bound} at {f.positions}"

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pair": [self.pair.a, self.pair.b] if self.pair is not None else None,
            "source": self.source,
            "pair_source": self.pair.source if self.pair is not None else None,
            "layer": self.layer,
            "coeff": self.coeff,
            "frac": self.frac,
            "mask": self.mask,
            "positions": self.positions,
            "fit": dataclasses.asdict(self.fit) if self.fit is not None else None,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> AdditionChoice:
        fit = FitChoice(**r["fit"]) if r.get("fit") else None
        source = r.get("pair_source", r.get("source", "hand-written"))
        pair = Pair(r["pair"][0], r["pair"][1], source) if r["pair"] else None
        return cls(pair, r["layer"], r["coeff"], r["frac"], r["mask"], r["positions"], fit)


class VectorSource(Protocol):
    """What turns a choice into its vector (``search.vectors.VectorCache``)."""

    def get(self, model: SteerableModel, choice: AdditionChoice) -> SteeringVector: ...


@dataclass(frozen=True)
class Candidate:
    additions: tuple[AdditionChoice, ...]

    def steering(self, model: SteerableModel, vectors: VectorSource) -> list[Addition]:
        return [
            Addition(
                vectors.get(model, c),
                1.0 if c.fit is not None else c.coeff,
                Positions.parse(c.positions),
                c.frac,
                MaskMode(c.mask),
            )
            for c in self.additions
        ]

    def record(self) -> list[dict[str, Any]]:
        """JSON-able form (stored on each trial as ``candidate``); ``from_record`` inverts it."""
        return [c.record() for c in self.additions]

    @classmethod
    def from_record(cls, record: list[dict[str, Any]]) -> Candidate:
        return cls(tuple(AdditionChoice.from_record(r) for r in record))

    def describe(self) -> str:
        return ", ".join(c.describe() for c in self.additions)


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[str]) -> str: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


def _float(trial: TrialLike, name: str, r: FloatRange) -> float:
    if not r.varies:
        return r.values[0] if r.values else float(r.low)  # type: ignore[arg-type]
    if r.values:
        return float(trial.suggest_categorical(name, r.values))  # type: ignore[arg-type]
    assert r.low is not None and r.high is not None
    return trial.suggest_float(name, r.low, r.high, log=r.log)


def _int(trial: TrialLike, name: str, r: IntRange) -> int:
    return trial.suggest_int(name, r.low, r.high) if r.varies else r.low


def _choice(trial: TrialLike, name: str, options: Sequence[str]) -> str:
    return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))


def suggest(trial: TrialLike, space: SpaceSpec, pool: Sequence[Pair]) -> Candidate:
    """Draw a candidate. Parameter names: ``kind``, ``pair``, ``layer``, ``coeff``, ``frac``, ``mask``,
    ``positions`` and, for learned vectors, ``init``, ``lr``, ``steps``, ``norm_bound``, for the first
    addition, with suffixes ``_2``, ``_3``... for further ones; ``n_additions`` if it varies. A dimension
    with a single value is not a parameter."""
    by_label = {p.label: p for p in pool}
    n = _int(trial, "n_additions", space.n_additions)
    choices = []
    for i in range(n):
        sfx = "" if i == 0 else f"_{i + 1}"
        kind = _choice(trial, "kind" + sfx, space.kinds)
        init = _choice(trial, "init" + sfx, space.learned.init) if kind == "learned" else "pair"
        pair = by_label[_choice(trial, "pair" + sfx, list(by_label))] if init == "pair" else None
        layer = _int(trial, "layer" + sfx, space.layer)
        coeff = _float(trial, "coeff" + sfx, space.coeff) if pair is not None else 1.0
        if kind == "learned":
            ls = space.learned
            fit = FitChoice(
                lr=_float(trial, "lr" + sfx, ls.lr),
                steps=_int(trial, "steps" + sfx, ls.steps),
                norm_bound=_float(trial, "norm_bound" + sfx, ls.norm_bound),
                init=init,
                positions="front" if init == "pair" else ls.positions,
            )
            choices.append(AdditionChoice(pair, layer, coeff, positions=fit.positions, fit=fit))
            continue
        choices.append(
            AdditionChoice(
                pair=pair,
                layer=layer,
                coeff=coeff,
                frac=_float(trial, "frac" + sfx, space.frac),
                mask=_choice(trial, "mask" + sfx, space.masks),
                positions=_choice(trial, "positions" + sfx, space.positions),
            )
        )
    return Candidate(tuple(choices))
