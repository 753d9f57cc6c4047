"""The evaluator every analysis shares: any intervention measured on one split, with bootstrap CIs.

One split's prompts, gold passages, neutral text and off-target prompts, and that split's seed (search: the
generation seed; validation: ``select.seed``; held-out, the test split: ``compare.seed``). The metrics are
the objectives layer's own (``Evaluator.text_items``/``model_items``), so a comparison measures exactly what
the search optimised. Results are typed (``Evaluation``) and serialise to the run folder's JSON.

Every method on a split is scored on the same prompts and seeds, so two methods' items are paired
(completion i of both comes from the same prompt and the same random numbers): ``paired_difference`` resamples
them together, and ``verdict`` says "beats", "ties" or "loses" from its CI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from objectives import Items, Objective
from search.config import ExperimentConfig, from_dict
from search.session import (
    ExperimentData,
    Scorers,
    build_evaluator,
    calibrate,
    load_data,
    load_experiment_model,
    metrics_for,
)
from steering import Addition, Positions, Steering, SteeringVector, generate, generate_candidates
from steering.model import SteerableModel

COMPARED = frozenset({"ppl_ratio", "kl", "steer_score"})
"""What every comparison reports beside the metrics the search measured: damage (perplexity ratio, KL) and
``steer_score`` with its concept, fluency and off-target parts."""

SHOWN_METRICS = (
    "bertscore_f1",
    "embedding_sim",
    "keyword_rate",
    "ppl_ratio",
    "kl",
    "concept_score",
    "fluency_score",
    "offtarget_score",
    "steer_score",
)
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


@dataclass(frozen=True)
class Measured:
    """One method's raw measurement on a split: every metric's items, and the completions (prompt-major)."""

    items: dict[str, Items]
    texts: list[str]
    prefix: str = ""

    def point(self, draw: dict[int, np.ndarray] | None = None) -> dict[str, float]:
        """Every metric on all items, or on the resample ``draw`` (item indices per item count)."""
        return {
            name: it.stat(draw[it.n] if draw is not None and it.resample else None) for name, it in self.items.items()
        }


def joint_draws(measured: Measured, resamples: int, seed: int) -> list[dict[int, np.ndarray]]:
    """Bootstrap resamples of item indices, one index array per item count in each: every metric over the same
    items (BERTScore and keyword rate over completions) is resampled together, and the same draws applied to
    two methods pair them."""
    counts = sorted({it.n for it in measured.items.values() if it.resample})
    rng = np.random.default_rng(seed)
    return [{n: rng.integers(0, n, n) for n in counts} for _ in range(resamples)]


Verdict = Literal["beats", "ties", "loses"]


@dataclass(frozen=True)
class Paired:
    """``a - b`` of one statistic on the same prompts and seeds, its paired bootstrap 95% CI, and the verdict
    in words: ``beats`` when the CI lies above 0 (for a statistic where lower is better: below 0), ``loses``
    on the other side, ``ties`` when it contains 0."""

    diff: Interval
    verdict: Verdict


def verdict(diff: Interval, *, higher_is_better: bool = True) -> Verdict:
    lo, hi = (diff.lo, diff.hi) if higher_is_better else (-diff.hi, -diff.lo)
    return "beats" if lo > 0 else "loses" if hi < 0 else "ties"


def paired_difference(
    a: Measured,
    b: Measured,
    stat: Callable[[dict[str, float]], float],
    *,
    resamples: int,
    seed: int,
    higher_is_better: bool = True,
) -> Paired:
    """``stat(a) - stat(b)`` with a paired bootstrap CI: each resample draws one set of item indices per item
    count and applies it to both methods (and to every metric over those items), so the noise the two share,
    the prompt and the random numbers of each completion, cancels."""
    if {name: it.n for name, it in a.items.items()} != {name: it.n for name, it in b.items.items()}:
        raise ValueError("paired difference of methods measured on different items")
    draws = [stat(a.point(draw)) - stat(b.point(draw)) for draw in joint_draws(a, resamples, seed)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    diff = Interval(stat(a.point()) - stat(b.point()), float(lo), float(hi))
    return Paired(diff, verdict(diff, higher_is_better=higher_is_better))


class SplitEvaluator:
    """Measures any intervention the way ``compare`` does, on one split: its prompts, gold passages, neutral
    text and off-target prompts (held-out: the ``compare.seed``; search: the generation seed),
    ``compare.n`` samples per prompt, bootstrap CIs, and the config's objective on the point estimates.
    Built once (references encoded once); every analysis uses it. ``n`` and ``prompts`` override the samples per
    prompt and keep only the split's first ``prompts`` prompts (a cheaper grid, e.g. the overshoot analysis)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: ExperimentData,
        model: SteerableModel,
        scorers: Scorers,
        split: str = "heldout",
        *,
        n: int | None = None,
        prompts: int | None = None,
    ) -> None:
        self.cfg, self.data, self.model, self.scorers, self.split = cfg, data, model, scorers, split
        self.prompts = data.prompts.part(split)[:prompts]  # the first ``prompts`` of the split (default: all)
        metrics = metrics_for(cfg, data) | COMPARED
        if scorers.bert is None or len(data.gold.passages.part(split)) < 2:
            metrics -= {"steer_score"}  # its concept part needs BERTScore and a leave-one-out gold anchor
        self.evaluator = build_evaluator(cfg, data, split, scorers, metrics)
        self.objective = Objective(cfg.objective)
        self.seed = {"search": cfg.generation.seed, "validation": cfg.select.seed, "heldout": cfg.compare.seed}[split]
        self.n = n if n is not None else cfg.select.n if split == "validation" else cfg.compare.n
        self.generation = dataclasses.replace(cfg.generation, n=self.n, seed=self.seed, first_sample=0)

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
    def measure(self, method: Method) -> Measured:
        """One method's completions on this split (``self.n`` per prompt, this split's seed) and every
        metric's items: completions, neutral texts or off-target prompts."""
        prompts = [method.prefix + p for p in self.prompts]
        calibrate(self.evaluator, self.model, self.prompts, self.generation)
        rows = generate(self.model, prompts, method.steering, self.generation)
        texts = [t for row in rows for t in row]
        prompt_of = [p for p, row in zip(prompts, rows, strict=True) for _ in row]
        items = self.evaluator.text_items(texts) | self.evaluator.model_items(self.model, method.steering)
        items |= self.evaluator.completion_items(self.model, prompt_of, texts)
        return Measured(items, texts, method.prefix)

    @torch.no_grad()
    def measure_many(self, methods: Sequence[Method]) -> list[Measured]:
        """``measure`` of several methods at once: their completions share generation batches
        (``generate_candidates``; methods with the same prefix) and encoder passes, and each method gets the
        completions and metric items ``measure`` gives it alone (rows are seeded by prompt and sample, never by
        batch)."""
        calibrate(self.evaluator, self.model, self.prompts, self.generation)
        texts: list[list[str]] = [[] for _ in methods]
        prompt_of: list[list[str]] = [[] for _ in methods]
        for prefix in dict.fromkeys(m.prefix for m in methods):
            group = [i for i, m in enumerate(methods) if m.prefix == prefix]
            prompts = [prefix + p for p in self.prompts]
            rows = generate_candidates(self.model, prompts, [methods[i].steering for i in group], self.generation)
            for i, cand in zip(group, rows, strict=True):
                texts[i] = [t for row in cand for t in row]
                prompt_of[i] = [p for p, row in zip(prompts, cand, strict=True) for _ in row]
        text_items = self.evaluator.text_items_many(texts)
        completion = self.evaluator.completion_items_many(
            self.model, list(zip(prompt_of, texts, strict=True)), rows_per_pass=self.generation.batch_size
        )
        return [
            Measured(t | self.evaluator.model_items(self.model, m.steering) | c, x, m.prefix)
            for m, t, c, x in zip(methods, text_items, completion, texts, strict=True)
        ]

    def full(self, point: dict[str, float]) -> dict[str, float]:
        """Measured metric values and the derived ones (``steer_score`` and its parts, if requested)."""
        return point | self.evaluator.derived(point)

    def objective_of(self, point: dict[str, float]) -> float | None:
        """The config's scalar objective on measured metric values, or None (multi-objective, or a metric
        missing)."""
        values = self.full(point)
        if not self.objective.metrics <= set(values):
            return None
        value = self.objective.value(values)
        return value if isinstance(value, float) else None

    def evaluation(self, measured: Measured) -> Evaluation:
        """Each metric as a bootstrap 95% CI over its items, derived metrics over joint resamples of theirs;
        metrics that are not means over items (distinct-n, a single-batch log-likelihood) are point values
        under ``corpus``."""
        b, ci_seed = self.cfg.compare.bootstrap, self.cfg.compare.seed
        items = measured.items
        metrics = {name: bootstrap_ci(it, resamples=b, seed=ci_seed) for name, it in items.items() if it.resample}
        corpus = {name: it.value for name, it in items.items() if not it.resample}
        derived = self.evaluator.derived(measured.point())
        if derived:
            draws = [self.evaluator.derived(measured.point(d)) for d in joint_draws(measured, b, ci_seed)]
            for name, value in derived.items():
                lo, hi = np.percentile([d[name] for d in draws], [2.5, 97.5])
                metrics[name] = Interval(value, float(lo), float(hi))
        point = {k: v.mean for k, v in metrics.items() if k not in derived} | corpus
        return Evaluation(metrics, corpus, self.objective_of(point), measured.prefix)

    def paired(self, a: Measured, b: Measured) -> Paired:
        """The paired difference of the config's scalar objective, ``a - b``, on this split."""
        if self.objective_of(a.point()) is None:
            raise ValueError("paired comparison needs a scalar objective measured on both methods")
        return paired_difference(
            a,
            b,
            lambda point: float(self.objective_of(point)),  # type: ignore[arg-type]
            resamples=self.cfg.compare.bootstrap,
            seed=self.cfg.compare.seed,
        )

    def __call__(self, method: Method) -> tuple[Evaluation, list[str]]:
        """The evaluation of one method and its completions."""
        measured = self.measure(method)
        return self.evaluation(measured), measured.texts


def build_heldout(
    cfg: ExperimentConfig, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> SplitEvaluator:
    """The held-out evaluator of ``cfg``, loading the model and scorers unless given."""
    data = load_data(cfg)
    model = model or load_experiment_model(cfg)
    scorers = scorers or Scorers.build(cfg, metrics_for(cfg, data), data)
    return SplitEvaluator(cfg, data, model, scorers, "heldout")
