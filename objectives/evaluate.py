"""Measure a set of named metrics for one candidate: texts in, raw numbers out.

Heavy scorers (BERTScore encoder, sentence embedder) are built once by the caller and injected; the gold
references are encoded once here, in ``__init__``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from objectives.bertscore import BertScorer
from objectives.compose import check_metric
from objectives.damage import GoldLogLikelihood, OffTargetKL, PerplexityRatio
from objectives.embedding import EmbeddingSimilarity
from objectives.items import Index, Items, list_mean, point, tensor_mean
from objectives.keywords import KeywordRate
from objectives.steer_score import DERIVED, NEEDS, Calibration, SteerSpec, steer_parts
from objectives.text import distinct_n, repetition_rates
from steering import Steering
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs

BERTSCORE = {"bertscore_p", "bertscore_r", "bertscore_f1"}
TEXT = {"distinct_1", "distinct_2", "rep_rate"}
MODEL_BASED = {"ppl_ratio", "kl", "gold_loglik"}
COMPLETION = {"completion_ppl"}
"""Metrics of the completions under the unsteered model (they need the prompts and the model)."""
ROWS_PER_PASS = 64
"""Completions scored per forward pass by default (callers pass their generation batch size). 384 SmolLM2
completions of ~45 tokens in one pass peaked at ~10 GB and were killed on a 24 GiB machine; 64 rows stay near
1.5 GB there. Vocabulary-sized memory is bounded beneath this, for every model, by ``steering.scoring.LOGIT_BUDGET``
(a Gemma 3 pass of 64 rows is scored in smaller ones)."""


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
        steer: SteerSpec = SteerSpec(),  # noqa: B008 (frozen)
        calibration: Calibration | None = None,
    ) -> None:
        self.metrics = {check_metric(m) for m in metrics}
        if self.metrics & DERIVED:
            self.metrics |= NEEDS
        if not data.gold:
            raise ValueError("gold set is empty")
        self.steer, self.calibration, self.gold = steer, calibration, data.gold
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

    @property
    def needs_calibration(self) -> bool:
        """Whether a derived metric (``steer_score`` and its parts) is requested: it needs ``calibrate`` first."""
        return bool(self.metrics & DERIVED)

    def completion_items(
        self, model: SteerableModel, prompts: Sequence[str], completions: Sequence[str]
    ) -> dict[str, Items]:
        """``completion_ppl``: perplexity of each completion given its prompt under the *unsteered* model
        (resampled as whole completions), if requested. ``prompts[i]`` is the prompt of ``completions[i]``."""
        return self.completion_items_many(model, [(prompts, completions)])[0]

    def completion_items_many(
        self,
        model: SteerableModel,
        groups: Sequence[tuple[Sequence[str], Sequence[str]]],
        *,
        rows_per_pass: int = ROWS_PER_PASS,
    ) -> list[dict[str, Items]]:
        """``completion_items`` of each ``(prompts, completions)`` group (e.g. one per trial of a batch): the
        groups' rows share forward passes of at most ``rows_per_pass`` rows."""
        if "completion_ppl" not in self.metrics:
            return [{} for _ in groups]
        prompts = [p for ps, cs in groups for p in _same_length(ps, cs)]
        completions = [c for _, cs in groups for c in cs]
        scored = [i for i, c in enumerate(completions) if c.strip()]  # an empty completion has no tokens to score
        nll, n = torch.zeros(len(completions)), torch.zeros(len(completions))
        step = max(1, rows_per_pass)
        for lo in range(0, len(scored), step):
            rows = scored[lo : lo + step]
            logp, count = continuation_logprobs(model, [prompts[i] for i in rows], [completions[i] for i in rows], [[]])
            nll[rows], n[rows] = -logp.detach().float().cpu(), count.float().cpu()
        out, start = [], 0
        for _, cs in groups:
            out.append({"completion_ppl": _perplexity(nll[start : start + len(cs)], n[start : start + len(cs)])})
            start += len(cs)
        return out

    def calibrate(self, model: SteerableModel, prompts: Sequence[str], unsteered: Sequence[str]) -> Calibration:
        """Measure (and keep) this split's ``Calibration``: the unsteered model's completions (``prompts[i]`` is
        the prompt of ``unsteered[i]``), and each gold passage of the split scored against the split's other
        passages (leave one out), so concept 1 means "as close to the gold set as its own passages are"."""
        if self._bert is None:
            raise ValueError("steer_score needs BERTScore")
        if len(self.gold) < 2:
            raise ValueError("steer_score needs at least 2 gold passages per split to anchor concept_score")
        raw = self.text_metrics(unsteered) | {
            k: v.value for k, v in self.completion_items(model, prompts, unsteered).items()
        }
        gold = list(self.gold)
        loo = [
            float(self._bert.score([g], self._bert.references(gold[:i] + gold[i + 1 :])).f1.mean())
            for i, g in enumerate(gold)
        ]
        self.calibration = Calibration(raw["bertscore_f1"], sum(loo) / len(loo), raw["completion_ppl"], raw["rep_rate"])
        return self.calibration

    def derived(self, raw: Mapping[str, float]) -> dict[str, float]:
        """``steer_score`` and all its parts from raw values when any of them is requested (else empty)."""
        if not self.needs_calibration:
            return {}
        if self.calibration is None:
            raise ValueError("steer_score needs the split's calibration: call Evaluator.calibrate first")
        return steer_parts(raw, self.calibration, self.steer)

    def text_items(self, completions: Sequence[str]) -> dict[str, Items]:
        """Each requested text metric as per-completion items (distinct-n as a corpus-level point)."""
        return self.text_items_many([completions])[0]

    def text_items_many(self, groups: Sequence[Sequence[str]]) -> list[dict[str, Items]]:
        """``text_items`` of each group of completions (e.g. one per trial of a batch): each encoder runs once
        over every group's completions, so rows of different groups share encoder batches."""
        if not groups or any(not g for g in groups):
            raise ValueError("no completions to score")
        flat = [c for g in groups for c in g]
        bert = (
            self._bert.score(flat, self._bert_refs) if self._bert is not None and self._bert_refs is not None else None
        )
        embed = (
            self._embed.score(flat, self._embed_refs)
            if self._embed is not None and self._embed_refs is not None
            else None
        )
        out, start = [], 0
        for completions in groups:
            part = slice(start, start + len(completions))
            start += len(completions)
            items: dict[str, Items] = {}
            if bert is not None:
                items |= {
                    "bertscore_p": tensor_mean(bert.precision[part]),
                    "bertscore_r": tensor_mean(bert.recall[part]),
                    "bertscore_f1": tensor_mean(bert.f1[part]),
                }
            if embed is not None:
                items["embedding_sim"] = tensor_mean(embed[part])
            if self._keywords is not None:
                counts = [float(self._keywords.count(c)) for c in completions]
                items |= {"keyword_rate": list_mean([float(c > 0) for c in counts]), "keyword_count": list_mean(counts)}
            if self.metrics & TEXT:
                items |= {f"distinct_{n}": point(distinct_n(completions, n)) for n in (1, 2)}
                items["rep_rate"] = list_mean(repetition_rates(completions))
            out.append({k: v for k, v in items.items() if k in self.metrics})
        return out

    def model_items(self, model: SteerableModel, steering: Steering) -> dict[str, Items]:
        """Each requested model-based metric (and its parts, e.g. ``ppl_steered``) as items."""
        items: dict[str, Items] = {}
        for metric in (self._ppl, self._kl, self._gold_ll):
            if metric is not None:
                items |= metric.items(model, steering)
        return items

    def text_metrics(self, completions: Sequence[str]) -> dict[str, float]:
        return {k: v.value for k, v in self.text_items(completions).items()}

    def model_metrics(self, model: SteerableModel, steering: Steering) -> dict[str, float]:
        return {k: v.value for k, v in self.model_items(model, steering).items()}

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


def _same_length(prompts: Sequence[str], completions: Sequence[str]) -> Sequence[str]:
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    return prompts


def _perplexity(nll: torch.Tensor, n: torch.Tensor) -> Items:
    """Perplexity of whole completions from their summed NLL and token counts (``[N]`` each)."""

    def ppl(idx: Index) -> float:
        num, den = (nll.sum(), n.sum()) if idx is None else (nll[idx].sum(), n[idx].sum())
        return math.exp(float(num / den)) if den > 0 else math.inf  # nothing but empty text: no fluency

    return Items(len(nll), ppl)
