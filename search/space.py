"""The search space: the only module that calls ``trial.suggest_*``.

A trial picks one or more additions; each addition picks a prompt pair from a pool, a layer, a
coefficient, a fraction of residual dimensions, a mask kind and a position mode. The pool holds the
hand-written pairs from the config plus pairs generated from templates and word lists. A ``Candidate`` is
plain data; turning it into tensors needs the model (``Candidate.steering``).

Later kinds of candidate (adversarially mutated pairs, gradient-fitted vectors) enter as further pool
entries with their own ``source``; the pool is keyed by a stable label, so a study's categorical choices
stay valid when a resumed run adds entries at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from steering import Addition, MaskMode, Positions, SteeringVector
from steering.model import SteerableModel


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    source: str = "hand-written"  # or "template"

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
            return
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or a list of values)")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")

    @property
    def varies(self) -> bool:
        """Whether this dimension is a trial parameter (more than one possible value)."""
        return len(self.values) > 1 if self.values else self.low != self.high


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
class SpaceSpec:
    layer: IntRange = field(default_factory=lambda: IntRange(0, 0))
    coeff: FloatRange = field(default_factory=lambda: FloatRange(1.0, 8.0))
    frac: FloatRange = field(default_factory=lambda: FloatRange(values=(1.0,)))
    masks: tuple[str, ...] = ("first",)
    positions: tuple[str, ...] = ("front",)
    n_additions: IntRange = field(default_factory=lambda: IntRange(1, 1))

    def __post_init__(self) -> None:
        for m in self.masks:
            MaskMode(m)
        for p in self.positions:
            Positions.parse(p)
        if not self.masks or not self.positions:
            raise ValueError("masks and positions need at least one entry")
        if self.n_additions.low < 1:
            raise ValueError("n_additions must be >= 1")


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
class AdditionChoice:
    pair: Pair
    layer: int
    coeff: float
    frac: float = 1.0
    mask: str = "first"
    positions: str = "front"


@dataclass(frozen=True)
class Candidate:
    additions: tuple[AdditionChoice, ...]

    def steering(self, model: SteerableModel, vectors: VectorCache) -> list[Addition]:
        return [
            Addition(
                vectors.get(model, c.pair, c.layer),
                c.coeff,
                Positions.parse(c.positions),
                c.frac,
                MaskMode(c.mask),
            )
            for c in self.additions
        ]


class VectorCache:
    """Pair vectors are deterministic per (pair, layer): build each once per study."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], SteeringVector] = {}

    def get(self, model: SteerableModel, pair: Pair, layer: int) -> SteeringVector:
        key = (pair.a, pair.b, layer)
        if key not in self._cache:
            self._cache[key] = SteeringVector.from_pair(model, pair.a, pair.b, layer)
        return self._cache[key]


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


def _choice(trial: TrialLike, name: str, options: Sequence[str]) -> str:
    return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))


def suggest(trial: TrialLike, space: SpaceSpec, pool: Sequence[Pair]) -> Candidate:
    """Draw a candidate. Parameter names: ``pair``, ``layer``, ``coeff``, ``frac``, ``mask``, ``positions``
    for the first addition, with suffixes ``_2``, ``_3``... for further ones; ``n_additions`` if it varies.
    A dimension with a single value is not a parameter."""
    by_label = {p.label: p for p in pool}
    n = space.n_additions.low
    if space.n_additions.high > n:
        n = trial.suggest_int("n_additions", space.n_additions.low, space.n_additions.high)
    choices = []
    for i in range(n):
        sfx = "" if i == 0 else f"_{i + 1}"
        label = _choice(trial, "pair" + sfx, list(by_label))
        layer = space.layer.low
        if space.layer.varies:
            layer = trial.suggest_int("layer" + sfx, space.layer.low, space.layer.high)
        choices.append(
            AdditionChoice(
                pair=by_label[label],
                layer=layer,
                coeff=_float(trial, "coeff" + sfx, space.coeff),
                frac=_float(trial, "frac" + sfx, space.frac),
                mask=_choice(trial, "mask" + sfx, space.masks),
                positions=_choice(trial, "positions" + sfx, space.positions),
            )
        )
    return Candidate(tuple(choices))
