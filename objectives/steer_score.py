"""One score that damage cannot buy: concept, fluency and off-target parts, each mapped to [0, 1], combined by
their harmonic mean, which is 0 when any part is 0 (in the spirit of AxBench's concept/instruction/fluency
harmonic mean).

A weighted sum lets a candidate trade broken text for concept: a repeated keyword scores high BERTScore against
wedding passages. Under a harmonic mean a candidate must keep every part up: halving fluency costs as much as
halving concept, and zero fluency is zero. Each part is anchored on measured values of the same split
(``Calibration``, measured once per split from the unsteered model) and on documented constants
(``SteerSpec``):

- ``concept_score``: BERTScore F1 against the gold passages, 0 at the unsteered model's F1 and 1 at the mean F1
  of each gold passage of the split against the split's other passages (leave one out: text as on-topic as the
  gold set itself); linear between, clipped.
- ``fluency_score``: the smaller of two parts. Perplexity of the completions under the *unsteered* model given
  their prompts (``completion_ppl``): 1 at or below the unsteered completions' perplexity, 0 at ``ppl_factor``
  times it, linear in log perplexity between. (On-topic words the unsteered model did not expect cost some
  perplexity too, which is why the factor is generous.) Repetition (``rep_rate``, the share of repeated word bigrams): 1
  at or below the unsteered rate, 0 at ``rep_span`` above it. Perplexity alone is fooled by loops (a model
  predicts its own repetition well), which the repetition part catches.
- ``offtarget_score``: KL(unsteered || steered) of next-token distributions on off-target prompts, 1 at 0 and
  0 at ``kl_max`` nats, linear between.
- ``steer_score``: ``3 / (1/concept + 1/fluency + 1/offtarget)``, 0 if any part is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PARTS = ("concept_score", "fluency_score", "offtarget_score")
STEER_SCORE = "steer_score"
DERIVED = frozenset({*PARTS, STEER_SCORE})
"""Metrics computed from other metrics and a split's calibration, not measured on items directly."""

NEEDS = frozenset({"bertscore_f1", "completion_ppl", "rep_rate", "kl"})
"""What the derived metrics are computed from."""


@dataclass(frozen=True)
class SteerSpec:
    """The constant anchors of ``steer_score`` (see the module docstring). Defaults measured on SmolLM2-135M
    (validation split, 32 completions each, README): fluent ``' weddings'`` at layer 18 coeff 4 has 2.4x the
    unsteered completion perplexity and KL 1.7 (fluency 0.61, off-target 0.57); word salad at layer 12 coeff 8
    has 96x and KL 5.1 (both 0)."""

    ppl_factor: float = 10.0
    rep_span: float = 0.5
    kl_max: float = 4.0

    def __post_init__(self) -> None:
        if not self.ppl_factor > 1:
            raise ValueError(f"steer.ppl_factor must be > 1, got {self.ppl_factor}")
        if not 0 < self.rep_span <= 1:
            raise ValueError(f"steer.rep_span must be in (0, 1], got {self.rep_span}")
        if not self.kl_max > 0:
            raise ValueError(f"steer.kl_max must be > 0, got {self.kl_max}")


@dataclass(frozen=True)
class Calibration:
    """The measured anchors of one split: the unsteered model's BERTScore F1, completion perplexity and
    repetition, and the leave-one-out F1 of the split's gold passages (concept 1)."""

    f1_unsteered: float
    f1_gold: float
    ppl_unsteered: float
    rep_unsteered: float

    def __post_init__(self) -> None:
        if not self.f1_gold > self.f1_unsteered:
            raise ValueError(
                f"gold passages score no higher than unsteered text against the gold set (F1 {self.f1_gold:.4f} "
                f"vs {self.f1_unsteered:.4f}): the gold set does not tell the concept apart, so concept_score "
                "has no scale"
            )


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def steer_parts(raw: Mapping[str, float], cal: Calibration, spec: SteerSpec = SteerSpec()) -> dict[str, float]:  # noqa: B008
    """The three parts and ``steer_score`` from raw metric values (``NEEDS``).

    Example:
        >>> cal = Calibration(f1_unsteered=0.40, f1_gold=0.60, ppl_unsteered=20.0, rep_unsteered=0.02)
        >>> steer_parts({"bertscore_f1": 0.50, "completion_ppl": 20.0, "rep_rate": 0.02, "kl": 2.0}, cal)
        {'concept_score': 0.5, 'fluency_score': 1.0, 'offtarget_score': 0.5, 'steer_score': 0.6}
    """
    missing = NEEDS - set(raw)
    if missing:
        raise KeyError(f"steer_score needs {', '.join(sorted(missing))}; measured: {', '.join(sorted(raw))}")
    concept = _clip((raw["bertscore_f1"] - cal.f1_unsteered) / (cal.f1_gold - cal.f1_unsteered))
    ppl = raw["completion_ppl"]
    ppl_part = _clip(1 - math.log(max(ppl, 1e-12) / cal.ppl_unsteered) / math.log(spec.ppl_factor))
    rep_part = _clip(1 - (raw["rep_rate"] - cal.rep_unsteered) / spec.rep_span)
    fluency = min(ppl_part, rep_part)
    offtarget = _clip(1 - raw["kl"] / spec.kl_max)
    parts = (concept, fluency, offtarget)
    score = 0.0 if min(parts) <= 0 else len(parts) / sum(1 / p for p in parts)
    return dict(zip(PARTS, parts, strict=True)) | {STEER_SCORE: score}
