"""The held-out evaluator every analysis shares: any intervention measured on one split, with bootstrap CIs.

Held-out prompts, a held-out seed (``compare.seed``), held-out gold passages, neutral text and off-target
prompts. The metrics are the objectives layer's own (``Evaluator.text_items``/``model_items``), so a
comparison measures exactly what the search optimised. Results are typed (``Evaluation``) and serialise to
the run folder's JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from objectives import Evaluator, Items, Objective
from search.config import ExperimentConfig, from_dict
from search.session import ExperimentData, Scorers, load_data, load_experiment_model, metrics_for
from steering import Addition, Positions, Steering, SteeringVector, generate
from steering.model import SteerableModel

COMPARED = frozenset({"ppl_ratio", "kl"})
"""Damage metrics every comparison reports, beside the metrics the search measured."""

SHOWN_METRICS = ("bertscore_f1", "embedding_sim", "keyword_rate", "ppl_ratio", "kl", "rep_rate")
"""The columns of every comparison table (CLI and report), where measured."""


@dataclass(frozen=True)
class Method:
    """An intervention to evaluate: steering (or none) and an optional prompt prefix (prompting)."""

    name: str
    steering: Steering
    prefix: str = ""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap 95% CI."""

    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Evaluation:
    """One method on one split: each metric with a CI, corpus-level point values (distinct-n), and the
    config's objective on the point estimates (None when it cannot be computed from them)."""

    metrics: dict[str, Interval] = field(default_factory=dict)
    corpus: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    prefix: str = ""

    @property
    def value(self) -> float:
        """The scalar objective; an error if it has none (e.g. a multi-objective config)."""
        if self.objective is None:
            raise ValueError("the objective is not computable on these metrics (is it multi-objective?)")
        return self.objective

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return from_dict(cls, data, "evaluation")


def shown_metrics(evaluations: Iterable[Evaluation]) -> list[str]:
    """``SHOWN_METRICS`` that at least one of ``evaluations`` measured, in order."""
    measured = {m for e in evaluations for m in e.metrics}
    return [m for m in SHOWN_METRICS if m in measured]


def bootstrap_ci(items: Items, *, resamples: int, seed: int) -> Interval:
    """The metric on all items and the 2.5/97.5 percentiles over resamples of items."""
    rng = np.random.default_rng(seed)
    draws = [items.stat(rng.integers(0, items.n, items.n)) for _ in range(resamples)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Interval(items.value, float(lo), float(hi))


class SplitEvaluator:
    """Measures any intervention the way ``compare`` does, on one split: its prompts, gold passages, neutral
    text and off-target prompts (held-out: the ``compare.seed``; search: the generation seed),
    ``compare.n`` samples per prompt, bootstrap CIs, and the config's objective on the point estimates.
    Built once (references encoded once); every analysis uses it."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: ExperimentData,
        model: SteerableModel,
        scorers: Scorers,
        split: str = "heldout",
    ) -> None:
        self.cfg, self.data, self.model, self.scorers, self.split = cfg, data, model, scorers, split
        metrics = metrics_for(cfg, data) | COMPARED
        self.evaluator = Evaluator(metrics, data.eval_data(split), bertscorer=scorers.bert, embedder=scorers.embedder)
        self.objective = Objective(cfg.objective)

    def on(self, split: str) -> SplitEvaluator:
        """The same model and scorers on another split."""
        return SplitEvaluator(self.cfg, self.data, self.model, self.scorers, split)

    def best_coeff(
        self, vector: SteeringVector, positions: Positions, coeffs: Sequence[float]
    ) -> tuple[float, list[float]]:
        """The coefficient in ``coeffs`` (the first of ties) whose addition of ``vector`` scores the highest
        objective on this split, and the objective of each coefficient in order."""
        values = [self(Method("", [Addition(vector, c, positions)]))[0].value for c in coeffs]
        return coeffs[values.index(max(values))], values

    @torch.no_grad()
    def __call__(self, method: Method) -> tuple[Evaluation, list[str]]:
        """The evaluation of one method and its completions. Each metric is a bootstrap 95% CI over its items
        (completions, neutral texts or off-target prompts); metrics that are not means over items
        (distinct-n, a single-batch log-likelihood) are point values under ``corpus``."""
        prompts = list(self.data.prompts.part(self.split))
        seed = self.cfg.compare.seed if self.split == "heldout" else self.cfg.generation.seed
        gen = dataclasses.replace(self.cfg.generation, n=self.cfg.compare.n, seed=seed, first_sample=0)
        rows = generate(self.model, [method.prefix + p for p in prompts], method.steering, gen)
        texts = [t for row in rows for t in row]
        items = self.evaluator.text_items(texts) | self.evaluator.model_items(self.model, method.steering)
        b, ci_seed = self.cfg.compare.bootstrap, self.cfg.compare.seed
        metrics = {name: bootstrap_ci(it, resamples=b, seed=ci_seed) for name, it in items.items() if it.resample}
        corpus = {name: it.value for name, it in items.items() if not it.resample}
        point = {k: v.mean for k, v in metrics.items()} | corpus
        value = self.objective.value(point) if self.objective.metrics <= set(point) else None
        scalar = value if isinstance(value, float) else None  # a multi-objective config has no single value
        return Evaluation(metrics, corpus, scalar, method.prefix), texts


def build_heldout(
    cfg: ExperimentConfig, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> SplitEvaluator:
    """The held-out evaluator of ``cfg``, loading the model and scorers unless given."""
    data = load_data(cfg)
    model = model or load_experiment_model(cfg)
    scorers = scorers or Scorers.build(cfg, metrics_for(cfg, data), data)
    return SplitEvaluator(cfg, data, model, scorers, "heldout")
