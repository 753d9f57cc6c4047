"""Purity: on-target gain per unit of off-target damage, over a study's complete trials.

"Purer" is measured, not asserted: each complete trial's on-target gain is its ``concept_score`` (BERTScore F1
against the gold passages, 0 at the unsteered model's F1 and 1 at the gold passages' own; see
``objectives.steer_score``) and its off-target damage is ``kl``, KL(unsteered || steered) of next-token
distributions on the off-target prompts, in nats. Purity is their ratio (gain per nat). The Pareto front is
the set of trials no other trial beats on both (higher gain and lower KL, one of them strictly): the purest
pairs at each strength. Both come from the search split, where every trial was measured; the comparison
measures the winner's on the test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from search.analysis.select import dominates, source_of
from search.objective import METRIC_ATTR_PREFIX

GAIN, DAMAGE = "concept_score", "kl"


@dataclass(frozen=True)
class PurityPoint:
    """One complete trial: its on-target gain, off-target KL and the candidate's source and description."""

    number: int
    label: str
    source: str
    gain: float
    kl: float

    @property
    def purity(self) -> float:
        """Gain per nat of off-target KL (inf at zero KL with a gain, nan with neither)."""
        if self.kl > 0:
            return self.gain / self.kl
        return math.inf if self.gain > 0 else math.nan


def purity_points(study: optuna.Study) -> list[PurityPoint]:
    """Every complete trial that recorded both metrics, in trial order (empty if the objective measured
    neither: ``concept_score`` needs ``steer_score``'s calibration)."""
    points = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        gain, kl = t.user_attrs.get(METRIC_ATTR_PREFIX + GAIN), t.user_attrs.get(METRIC_ATTR_PREFIX + DAMAGE)
        record = t.user_attrs.get("candidate")
        if gain is None or kl is None or not record or not (math.isfinite(gain) and math.isfinite(kl)):
            continue
        label = str(t.user_attrs.get("label", f"trial {t.number}"))
        points.append(PurityPoint(t.number, label, source_of(record), float(gain), float(kl)))
    return points


def pareto_front(points: list[PurityPoint]) -> list[PurityPoint]:
    """The points no other point dominates (gain at least as high and KL at least as low, one strictly),
    by increasing KL. Of identical points the earliest trial is kept."""
    front = []
    for p in points:
        dominated = any(
            dominates([q.gain, q.kl], [p.gain, p.kl], [True, False])
            or (q.gain == p.gain and q.kl == p.kl and q.number < p.number)
            for q in points
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p.kl, -p.gain))
