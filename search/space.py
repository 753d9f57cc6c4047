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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from search import params
from search.config.space import FitChoice, FloatRange, IntRange, PairsSpec, SpaceSpec
from steering import Addition, MaskMode, Positions, SteeringVector
from steering.model import SteerableModel


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    source: str = "hand-written"  # or "template", "distilled", "adversarial"

    @property
    def label(self) -> str:
        return f"{self.a} || {self.b}"


def pair_pool(spec: PairsSpec) -> list[Pair]:
    """Hand-written pairs first, then template pairs, then distilled pairs; duplicates removed, order stable."""
    pool = [Pair(a, b, "hand-written") for a, b in spec.hand_written]
    pool += [Pair(ta.format(x=w), tb.format(x=w), "template") for ta, tb in spec.templates for w in spec.words]
    pool += [Pair(a, b, "distilled") for a, b in spec.distilled]
    seen: set[str] = set()
    unique = []
    for p in pool:
        if p.label not in seen:
            seen.add(p.label)
            unique.append(p)
    return unique


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
    def applied_coeff(self) -> float:
        """The coefficient the addition is applied with: ``coeff`` for a pair, ``LEARNED_COEFF`` for a learned
        vector (its fitted values are its strength)."""
        return params.LEARNED_COEFF if self.fit is not None else self.coeff

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
                c.applied_coeff,
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
    n = _int(trial, params.N_ADDITIONS, space.n_additions)
    choices = []
    for i in range(n):

        def name(base: str, i: int = i) -> str:
            return params.name(base, i)

        kind = _choice(trial, name(params.KIND), space.kinds)
        init = _choice(trial, name(params.INIT), space.learned.init) if kind == "learned" else "pair"
        pair = by_label[_choice(trial, name(params.PAIR), list(by_label))] if init == "pair" else None
        layer = _int(trial, name(params.LAYER), space.layer)
        coeff = _float(trial, name(params.COEFF), space.coeff) if pair is not None else params.LEARNED_COEFF
        if kind == "learned":
            ls = space.learned
            fit = FitChoice(
                lr=_float(trial, name(params.LR), ls.lr),
                steps=_int(trial, name(params.STEPS), ls.steps),
                norm_bound=_float(trial, name(params.NORM_BOUND), ls.norm_bound),
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
                frac=_float(trial, name(params.FRAC), space.frac),
                mask=_choice(trial, name(params.MASK), space.masks),
                positions=_choice(trial, name(params.POSITIONS), space.positions),
            )
        )
    return Candidate(tuple(choices))
