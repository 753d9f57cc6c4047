"""``steersearch compare``: the fair comparison, on data the search never saw.

Held-out prompts, held-out seeds (``compare.seed``, distinct from the search's) and held-out gold
passages, neutral text and off-target prompts. Methods: unsteered, each hand-written baseline, a
prompting baseline (an instruction prefix asking for the target behaviour), and the best found (from
``best.json``; selection happened on the search split only). Every metric gets a bootstrap 95% CI.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from objectives import Evaluator, Items, Objective
from search.config import ExperimentConfig
from search.outputs import write_text
from search.run import (
    ExperimentData,
    Scorers,
    load_data,
    load_experiment_model,
    load_run_study,
    metrics_for,
    vector_cache,
)
from search.space import AdditionChoice, Candidate, Pair
from search.vectors import VectorCache
from steering import Addition, Positions, Steering, SteeringVector, generate
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    name: str
    steering: Steering
    prefix: str = ""


def bootstrap_ci(items: Items, *, resamples: int, seed: int) -> tuple[float, float, float]:
    """``(estimate, lo, hi)``: the metric on all items and the 2.5/97.5 percentiles over resamples of items."""
    rng = np.random.default_rng(seed)
    draws = [items.stat(rng.integers(0, items.n, items.n)) for _ in range(resamples)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return items.value, float(lo), float(hi)


COMPARED = frozenset({"ppl_ratio", "kl"})
"""Damage metrics every comparison reports, beside the metrics the search measured."""


def methods_for(
    cfg: ExperimentConfig, run_dir: Path, model: SteerableModel, vectors: VectorCache, gold_name: str
) -> list[Method]:
    methods = [Method("unsteered", [])]
    baselines = set()
    for b in cfg.baselines:
        cand = Candidate((AdditionChoice(Pair(b.pair[0], b.pair[1]), b.layer, b.coeff, b.frac, b.mask, b.positions),))
        baselines.add(cand)
        name = f"hand-written: {b.pair[0]!r} / {b.pair[1]!r} (layer {b.layer}, coeff {b.coeff:g})"
        methods.append(Method(name, cand.steering(model, vectors)))
    prefix = cfg.compare.prefix if cfg.compare.prefix is not None else f"Let me tell you about {gold_name}. "
    methods.append(Method(f"prompting: {prefix.strip()!r}", [], prefix))
    best = json.loads((run_dir / "best.json").read_text())
    entries = best.get("pareto") or ([best] if best.get("candidate") else [])
    chosen = [(f"best (trial {e['number']})", e["number"], e["candidate"]) for e in entries[: cfg.compare.max_best]]
    if cfg.compare.per_source and not best.get("pareto"):
        shown = {number for _, number, _ in chosen}
        per_source = best_per_source(load_run_study(cfg, run_dir))  # any storage, or a one-line error
        for source, (number, record) in per_source.items():
            if number not in shown and Candidate.from_record(record) not in baselines:  # not a row already
                chosen.append((f"best {source} (trial {number})", number, record))
    for label, _, record in chosen:
        cand = Candidate.from_record(record)
        methods.append(Method(f"{label}: {cand.describe()}", cand.steering(model, vectors)))
    return methods


def _source_label(r: dict[str, Any]) -> str:
    source = str(r.get("source", "hand-written"))
    if source == "learned" and r.get("fit"):
        return f"learned ({'fine-tuned pair' if r['fit']['init'] == 'pair' else 'from zeros'})"
    return source


def best_per_source(study: optuna.Study) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    """The best complete trial (number, candidate record) per candidate source: ``hand-written``,
    ``template``, ``adversarial``, ``learned (from zeros)``, ``learned (fine-tuned pair)``; several
    additions count as ``mixed`` unless they agree.
    Selection uses search-split values only. Single-objective studies."""
    best: dict[str, tuple[float, int, list[dict[str, Any]]]] = {}
    if len(study.directions) > 1:
        return {}
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = t.user_attrs.get("candidate")
        if not record or t.value is None or not math.isfinite(t.value):
            continue
        sources = {_source_label(r) for r in record}
        source = sources.pop() if len(sources) == 1 else "mixed"
        if source not in best or sign * t.value > sign * best[source][0]:
            best[source] = (t.value, t.number, record)
    return {s: (n, r) for s, (_, n, r) in sorted(best.items())}


class SplitEvaluator:
    """Measures any intervention the way ``compare`` does, on one split: its prompts, gold passages, neutral
    text and off-target prompts (held-out: the ``compare.seed``; search: the generation seed),
    ``compare.n`` samples per prompt, bootstrap CIs, and the config's objective on the point estimates.
    Built once (references encoded once); ``distill`` and ``length`` analyses use it too."""

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
        # The objectives layer's evaluator, as in the search: the comparison measures what was optimised.
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
        values = [objective_of(self(Method("", [Addition(vector, c, positions)]))[0]) for c in coeffs]
        return coeffs[values.index(max(values))], values

    @torch.no_grad()
    def __call__(self, method: Method) -> tuple[dict[str, Any], list[str]]:
        """``({"metrics", "corpus", "objective", "prefix"}, completions)`` for one method: each metric a
        bootstrap 95% CI over its items (completions, neutral texts or off-target prompts); metrics that are
        not means over items (distinct-n, a single-batch log-likelihood) as point values under ``corpus``."""
        prompts = list(self.data.prompts.part(self.split))
        seed = self.cfg.compare.seed if self.split == "heldout" else self.cfg.generation.seed
        gen = dataclasses.replace(self.cfg.generation, n=self.cfg.compare.n, seed=seed, first_sample=0)
        rows = generate(self.model, [method.prefix + p for p in prompts], method.steering, gen)
        texts = [t for row in rows for t in row]
        items = self.evaluator.text_items(texts) | self.evaluator.model_items(self.model, method.steering)
        b, ci_seed = self.cfg.compare.bootstrap, self.cfg.compare.seed
        metrics = {}
        for name, it in items.items():
            if it.resample:
                est, lo, hi = bootstrap_ci(it, resamples=b, seed=ci_seed)
                metrics[name] = {"mean": est, "lo": lo, "hi": hi}
        corpus = {name: it.value for name, it in items.items() if not it.resample}
        point = {k: v["mean"] for k, v in metrics.items()} | corpus
        value = self.objective.value(point) if self.objective.metrics <= set(point) else None
        return {"metrics": metrics, "corpus": corpus, "objective": value, "prefix": method.prefix}, texts


def objective_of(result: dict[str, Any]) -> float:
    """The scalar objective of one evaluation (``SplitEvaluator``'s result); an error if it has none."""
    value = result.get("objective")
    if value is None:
        raise ValueError("the objective is not computable on these metrics (is it multi-objective?)")
    return float(value)


def build_heldout(
    cfg: ExperimentConfig, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> SplitEvaluator:
    data = load_data(cfg)
    model = model or load_experiment_model(cfg)
    scorers = scorers or Scorers.build(cfg, metrics_for(cfg, data), data)
    return SplitEvaluator(cfg, data, model, scorers, "heldout")


def run_compare(
    cfg: ExperimentConfig, run_dir: Path, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> dict[str, Any]:
    """Evaluate every method on the held-out split and write ``run_dir/comparison.json``."""
    if not (run_dir / "best.json").exists():
        raise FileNotFoundError(f"{run_dir}/best.json does not exist: run `steersearch run` first")
    heldout = build_heldout(cfg, model=model, scorers=scorers)
    data = heldout.data
    vectors = vector_cache(cfg, data, run_dir)  # fitted vectors load from the run folder
    results: dict[str, Any] = {}
    examples: dict[str, list[str]] = {}
    for method in methods_for(cfg, run_dir, heldout.model, vectors, data.gold.name):
        logger.info("comparing %s", method.name)
        results[method.name], texts = heldout(method)
        examples[method.name] = texts[: cfg.compare.n]
    report = {
        "split": "heldout",
        "prompts": list(data.prompts.heldout),
        "samples_per_prompt": cfg.compare.n,
        "seed": cfg.compare.seed,
        "bootstrap_resamples": cfg.compare.bootstrap,
        "methods": results,
        "examples": examples,
    }
    write_text(run_dir / "comparison.json", json.dumps(report, indent=2))
    if (run_dir / "study.db").exists() or cfg.study.storage:
        from search.report import write_report

        write_report(run_dir, load_run_study(cfg, run_dir), [t.metric for t in cfg.objective.terms])
    return report


def fmt_ci(v: dict[str, float] | None) -> str:
    """``mean [lo, hi]`` of one metric's estimate, or ``–`` when it was not measured."""
    return f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" if v else "–"


def table(report: dict[str, Any], metrics: Sequence[str]) -> str:
    """Markdown table: one row per method, ``mean [lo, hi]`` per metric."""
    head = "| method | " + " | ".join(metrics) + " |"
    rows = [head, "|---" * (len(metrics) + 1) + "|"]
    for name, r in report["methods"].items():
        cells = []
        for m in metrics:
            v = r["metrics"].get(m)
            cells.append(fmt_ci(v))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
