"""Measure a set of named metrics for one candidate: texts in, raw numbers out.

Heavy scorers (BERTScore encoder, sentence embedder) are built once by the caller and injected; the gold
references are encoded once here, in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from objectives.bertscore import BertScorer
from objectives.compose import check_metric
from objectives.damage import GoldLogLikelihood, OffTargetKL, PerplexityRatio
from objectives.embedding import EmbeddingSimilarity
from objectives.keywords import KeywordRate
from objectives.text import text_quality
from steering import Steering
from steering.model import SteerableModel

BERTSCORE = {"bertscore_p", "bertscore_r", "bertscore_f1"}
TEXT = {"distinct_1", "distinct_2", "rep_rate"}
MODEL_BASED = {"ppl_ratio", "kl", "gold_loglik"}


@dataclass(frozen=True)
class EvalData:
    """The texts metrics are measured against (one split: search or held-out)."""

    gold: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    neutral_texts: tuple[str, ...] = ()
    off_target_prompts: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()


class Evaluator:
    """Computes the named metrics; raises early, naming what is missing.

    Example:
        >>> ev = Evaluator({"bertscore_f1", "rep_rate"}, EvalData(gold=passages), bertscorer=BertScorer())
        >>> ev.evaluate(completions)
        {'bertscore_f1': 0.61, 'rep_rate': 0.02}
    """

    def __init__(
        self,
        metrics: Iterable[str],
        data: EvalData,
        *,
        bertscorer: BertScorer | None = None,
        embedder: EmbeddingSimilarity | None = None,
    ) -> None:
        self.metrics = {check_metric(m) for m in metrics}
        if not data.gold:
            raise ValueError("gold set is empty")
        want = self.metrics
        self._bert = self._bert_refs = None
        if want & BERTSCORE:
            if bertscorer is None:
                raise ValueError("BERTScore metrics need a bertscorer")
            self._bert, self._bert_refs = bertscorer, bertscorer.references(data.gold)
        self._embed = self._embed_refs = None
        if "embedding_sim" in want:
            if embedder is None:
                raise ValueError("embedding_sim needs an embedder")
            self._embed, self._embed_refs = embedder, embedder.references(data.gold)
        self._keywords = KeywordRate(data.keywords) if want & {"keyword_rate", "keyword_count"} else None
        self._ppl = PerplexityRatio(data.neutral_texts) if "ppl_ratio" in want else None
        self._kl = OffTargetKL(data.off_target_prompts) if "kl" in want else None
        self._gold_ll = GoldLogLikelihood(data.prompts, data.gold) if "gold_loglik" in want else None

    @property
    def needs_model(self) -> bool:
        return bool(self.metrics & MODEL_BASED)

    def text_metrics(self, completions: Sequence[str]) -> dict[str, float]:
        if not completions:
            raise ValueError("no completions to score")
        raw: dict[str, float] = {}
        if self._bert is not None and self._bert_refs is not None:
            raw |= self._bert.score(completions, self._bert_refs).mean()
        if self._embed is not None and self._embed_refs is not None:
            raw["embedding_sim"] = float(self._embed.score(completions, self._embed_refs).mean())
        if self._keywords is not None:
            kw = self._keywords.score(completions)
            raw |= {"keyword_rate": kw.rate, "keyword_count": kw.mean_count}
        if self.metrics & TEXT:
            raw |= text_quality(completions)
        return {k: v for k, v in raw.items() if k in self.metrics}

    def model_metrics(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        raw: dict[str, float] = {}
        for metric in (self._ppl, self._kl, self._gold_ll):
            if metric is not None:
                raw |= metric.score(model, steering)
        return raw

    def evaluate(
        self, completions: Sequence[str], model: SteerableModel | None = None, steering: Steering = ()
    ) -> dict[str, float]:
        """Every requested metric (model-based ones also report their parts, e.g. ``ppl_steered``)."""
        raw = self.text_metrics(completions)
        if self.needs_model:
            if model is None:
                raise ValueError(f"metrics {sorted(self.metrics & MODEL_BASED)} need the model")
            raw |= self.model_metrics(model, steering)
        return raw
