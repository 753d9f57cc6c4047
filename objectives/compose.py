"""Objectives built from config: a weighted scalar with hard constraints as penalties, or a vector.

Every metric keeps its raw value; the composite is computed from the raw values, so a report can show
all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from objectives.steer_score import SteerSpec

MAXIMIZE, MINIMIZE = "maximize", "minimize"

METRICS: dict[str, str] = {
    "bertscore_f1": MAXIMIZE,
    "bertscore_p": MAXIMIZE,
    "bertscore_r": MAXIMIZE,
    "embedding_sim": MAXIMIZE,
    "keyword_rate": MAXIMIZE,
    "keyword_count": MAXIMIZE,
    "distinct_1": MAXIMIZE,
    "distinct_2": MAXIMIZE,
    "rep_rate": MINIMIZE,
    "ppl_ratio": MINIMIZE,
    "kl": MINIMIZE,
    "gold_loglik": MAXIMIZE,
    "completion_ppl": MINIMIZE,
    "concept_score": MAXIMIZE,
    "fluency_score": MAXIMIZE,
    "offtarget_score": MAXIMIZE,
    "steer_score": MAXIMIZE,
}
"""Every metric an objective may name, with the direction that is better."""


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return name


@dataclass(frozen=True)
class Term:
    metric: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_metric(self.metric)


@dataclass(frozen=True)
class Constraint:
    """``metric <= max`` and/or ``metric >= min``; a violation costs ``penalty`` per unit in a scalar objective."""

    metric: str
    max: float | None = None
    min: float | None = None
    penalty: float = 10.0

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric!r} needs max or min")
        if self.penalty < 0:
            raise ValueError(f"constraint on {self.metric!r}: penalty must be >= 0")

    def violation(self, value: float) -> float:
        over = max(0.0, value - self.max) if self.max is not None else 0.0
        under = max(0.0, self.min - value) if self.min is not None else 0.0
        return over + under


@dataclass(frozen=True)
class ObjectiveSpec:
    """``kind: scalar`` maximises sum(weight * metric) - sum(penalty * violation); ``kind: multi`` returns one
    value per term, each in its metric's own direction (constraints are reported, not folded in)."""

    kind: Literal["scalar", "multi"] = "scalar"
    terms: tuple[Term, ...] = (Term("bertscore_f1"),)
    constraints: tuple[Constraint, ...] = field(default_factory=tuple)
    steer: SteerSpec = field(default_factory=SteerSpec)  # anchors of steer_score and its parts

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("objective needs at least one term")


class Objective:
    """Turns raw metric values into the study's value(s).

    Example:
        >>> spec = ObjectiveSpec(terms=(Term("bertscore_f1"),), constraints=(Constraint("ppl_ratio", max=1.2),))
        >>> obj = Objective(spec)
        >>> obj.value({"bertscore_f1": 0.6, "ppl_ratio": 1.3})   # 0.6 - 10 * 0.1
        -0.4
    """

    def __init__(self, spec: ObjectiveSpec) -> None:
        self.spec = spec

    @property
    def metrics(self) -> set[str]:
        """Every metric this objective needs measured."""
        return {t.metric for t in self.spec.terms} | {c.metric for c in self.spec.constraints}

    @property
    def directions(self) -> list[str]:
        if self.spec.kind == "scalar":
            return [MAXIMIZE]
        return [METRICS[t.metric] for t in self.spec.terms]

    def penalty(self, raw: Mapping[str, float]) -> float:
        return sum(c.penalty * c.violation(self._get(raw, c.metric)) for c in self.spec.constraints)

    def feasible(self, raw: Mapping[str, float]) -> bool:
        return all(c.violation(self._get(raw, c.metric)) == 0 for c in self.spec.constraints)

    def value(self, raw: Mapping[str, float]) -> float | tuple[float, ...]:
        if self.spec.kind == "multi":
            return tuple(self._get(raw, t.metric) for t in self.spec.terms)
        return sum(t.weight * self._get(raw, t.metric) for t in self.spec.terms) - self.penalty(raw)

    @staticmethod
    def _get(raw: Mapping[str, float], metric: str) -> float:
        if metric not in raw:
            raise KeyError(f"metric {metric!r} was not measured; measured: {', '.join(sorted(raw))}")
        return float(raw[metric])
