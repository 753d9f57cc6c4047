"""Test doubles for the objectives layer: a BERTScore stand-in that needs no encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from objectives.bertscore import BertScoreResult
from objectives.text import words


class FakeBertScorer:
    """Same interface as ``BertScorer`` (``references``/``score``) but P/R/F1 are word-overlap fractions,
    best over references. Deterministic, instant, and still higher for on-topic text."""

    def references(self, passages: Sequence[str]) -> list[set[str]]:  # type: ignore[override]
        if not passages:
            raise ValueError("gold set is empty")
        return [set(words(p)) for p in passages]

    def score(self, completions: Sequence[str], refs: list[set[str]]) -> BertScoreResult:
        if not completions:
            raise ValueError("no completions to score")
        prf = []
        for c in completions:
            cw = set(words(c))
            best = torch.zeros(3)
            for rw in refs:
                common = len(cw & rw)
                p = common / len(cw) if cw else 0.0
                r = common / len(rw) if rw else 0.0
                f = 2 * p * r / (p + r) if p + r else 0.0
                best = torch.maximum(best, torch.tensor([p, r, f]))
            prf.append(best)
        t = torch.stack(prf)
        return BertScoreResult(t[:, 0], t[:, 1], t[:, 2])
