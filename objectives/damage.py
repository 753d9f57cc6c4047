"""Model-based metrics: what a steering intervention does to the model off target, and to the gold text.

Each takes the model and the intervention (``steering.Steering``); unsteered reference values are computed
once per model and kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from steering import Steering
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs, position_logprobs


def _require(texts: Sequence[str], what: str) -> tuple[str, ...]:
    if not texts:
        raise ValueError(f"{what} is empty")
    if any(not t.strip() for t in texts):
        raise ValueError(f"{what} has a blank entry")
    return tuple(texts)


class PerplexityRatio:
    """ActAdd's perplexity experiment: perplexity of neutral text steered ÷ unsteered (1 = no damage).

    The steering is applied to each text as to a prompt (front additions at its first tokens).
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = _require(texts, "neutral text set")
        self._base_items: dict[int, tuple[Tensor, Tensor]] = {}

    def per_text(self, model: SteerableModel, steering: Steering) -> tuple[Tensor, Tensor, Tensor]:
        """``(nll_steered [N], nll_unsteered [N], n_tokens [N])`` summed per text (for resampling)."""
        key = id(model)
        if key not in self._base_items:
            logp, n = continuation_logprobs(model, [""] * len(self.texts), list(self.texts), [[]])
            self._base_items[key] = (-logp, n)
        base, n = self._base_items[key]
        logp, _ = continuation_logprobs(model, [""] * len(self.texts), list(self.texts), [steering])
        return -logp, base, n

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        nll, nll_base, n = self.per_text(model, steering)
        base, steered = float(nll_base.sum() / n.sum()), float(nll.sum() / n.sum())
        return {
            "ppl_unsteered": math.exp(base),
            "ppl_steered": math.exp(steered),
            "ppl_ratio": math.exp(steered - base),
        }


class OffTargetKL:
    """Mean KL(unsteered ‖ steered) of next-token distributions over every position of off-target prompts."""

    def __init__(self, prompts: Sequence[str]) -> None:
        self.prompts = _require(prompts, "off-target prompt set")
        self._base: dict[int, tuple[Tensor, Tensor]] = {}

    def per_prompt(self, model: SteerableModel, steering: Steering) -> tuple[Tensor, Tensor]:
        """``(kl_sum [N], n_positions [N])`` per prompt (for resampling)."""
        key = id(model)
        if key not in self._base:
            self._base[key] = position_logprobs(model, list(self.prompts), [[]])
        base, mask = self._base[key]
        steered, _ = position_logprobs(model, list(self.prompts), [steering])
        kl = (base.exp() * (base - steered)).sum(dim=-1)  # [B, T]
        return (kl * mask).sum(dim=1), mask.sum(dim=1).to(kl.dtype)

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        kl, n = self.per_prompt(model, steering)
        return {"kl": float(kl.sum() / n.sum())}


class GoldLogLikelihood:
    """Teacher-forced mean log-likelihood per token of gold passages after neutral prompts, under steering.

    Higher is better. Cheap and differentiable (``grad=True``), which gradient fitting and pruning use.
    """

    def __init__(self, prompts: Sequence[str], passages: Sequence[str], *, max_pairs: int = 64) -> None:
        _require(prompts, "prompt set")
        _require(passages, "gold set")
        pairs = [(p, " " + g.strip()) for p in prompts for g in passages]
        step = max(1, len(pairs) // max_pairs)
        self.pairs = tuple(pairs[::step][:max_pairs])

    def value(self, model: SteerableModel, steering: Steering, *, grad: bool = False) -> Tensor:
        prefixes, golds = zip(*self.pairs, strict=True)
        logp, n = continuation_logprobs(model, list(prefixes), list(golds), [steering], grad=grad)
        return logp.sum() / n.sum()

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        return {"gold_loglik": float(self.value(model, steering))}
