"""Model-based metrics: what a steering intervention does to the model off target, and to the gold text.

Each takes the model and the intervention (``steering.Steering``); unsteered reference values are computed
once per model and kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from objectives.items import Items, point, ratio_of_sums
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

    def items(self, model: SteerableModel, steering: Steering) -> dict[str, Items]:
        """``ppl_ratio`` and its parts over the neutral texts (resampled as whole texts)."""
        nll, nll_base, n = self.per_text(model, steering)
        steered, base = ratio_of_sums(nll, n), ratio_of_sums(nll_base, n)
        return {
            "ppl_unsteered": Items(len(n), lambda idx: math.exp(base.stat(idx))),
            "ppl_steered": Items(len(n), lambda idx: math.exp(steered.stat(idx))),
            "ppl_ratio": Items(len(n), lambda idx: math.exp(steered.stat(idx) - base.stat(idx))),
        }

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        return {k: v.value for k, v in self.items(model, steering).items()}


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

    def items(self, model: SteerableModel, steering: Steering) -> dict[str, Items]:
        """``kl`` over the off-target prompts (resampled as whole prompts)."""
        return {"kl": ratio_of_sums(*self.per_prompt(model, steering))}

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        return {k: v.value for k, v in self.items(model, steering).items()}


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

    def items(self, model: SteerableModel, steering: Steering) -> dict[str, Items]:
        return {"gold_loglik": point(float(self.value(model, steering)))}

    def score(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        return {k: v.value for k, v in self.items(model, steering).items()}
