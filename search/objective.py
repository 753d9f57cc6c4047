"""The Optuna objective: trial -> candidate -> completions -> metrics -> value, with multi-fidelity pruning.

Rungs are cumulative samples per prompt (e.g. ``(2, 8)``). Each rung generates only the new samples
(``GenerationConfig.first_sample``), so the full-budget completions of a survivor are exactly what a
single full call would give. After each rung but the last, the value is reported and the pruner may stop
the trial. Model-based metrics (perplexity ratio, KL, gold log-likelihood) do not depend on samples and
are measured once.

Each trial stores its raw metrics twice: as one ``metrics`` dict (what the run folder and the report read)
and as one numeric user attribute per metric, ``metric_<name>`` (``metric_kl``, ``metric_ppl_ratio``,
``metric_bertscore_f1``...), so that optuna-dashboard can sort and filter trials by each; ``label`` is the
candidate's readable description. The study's objective names come from ``SteeringObjective.metric_names``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import optuna

from objectives import Evaluator, Objective
from search.config.features import FidelitySpec
from search.config.space import SpaceSpec
from search.space import Candidate, Pair, suggest
from search.vectors import VectorCache
from steering import GenerationConfig, Steering, generate
from steering.atomic import atomic_write_text
from steering.model import SteerableModel

logger = logging.getLogger(__name__)

METRIC_ATTR_PREFIX = "metric_"
"""Each raw metric is also a numeric user attribute ``metric_<name>`` (the same names as trials.csv's columns)."""


class CompletionSink:
    """Writes each finished trial's completions to ``DIR/trial_<number>.jsonl`` (one line per completion)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, number: int, prompts: Sequence[str], texts: Sequence[Sequence[str]]) -> None:
        lines = [
            json.dumps({"prompt_index": p, "prompt": prompt, "sample": s, "text": text}) + "\n"
            for p, (prompt, row) in enumerate(zip(prompts, texts, strict=True))
            for s, text in enumerate(row)
        ]
        atomic_write_text(self.directory / f"trial_{number:05d}.jsonl", "".join(lines))  # never half a file


class SteeringObjective:
    """Callable Optuna objective; build once per study (model, scorers and references are injected)."""

    def __init__(
        self,
        *,
        model: SteerableModel,
        evaluator: Evaluator,
        objective: Objective,
        space: SpaceSpec,
        pool: Sequence[Pair],
        prompts: Sequence[str],
        generation: GenerationConfig,
        fidelity: FidelitySpec = FidelitySpec(),  # noqa: B008 (frozen, so one shared default is safe)
        vectors: VectorCache | None = None,
        sink: CompletionSink | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("no search prompts")
        self.model, self.evaluator, self.objective = model, evaluator, objective
        self.space, self.pool, self.prompts = space, list(pool), list(prompts)
        self.generation, self.fidelity = generation, fidelity
        self.vectors = vectors or VectorCache()
        self.sink = sink
        self.multi = len(objective.directions) > 1

    @staticmethod
    def metric_names(objective: Objective) -> list[str]:
        """Names for the study's values (``Study.set_metric_names``): each term's metric for a multi-objective
        study; for a scalar one, its weighted sum of terms, less the constraints' penalties if it has any
        (``bertscore_f1 - penalty(ppl_ratio<=1.2)``)."""
        spec = objective.spec
        if spec.kind == "multi":
            return [t.metric for t in spec.terms]
        name = ""
        for t in spec.terms:
            term = t.metric if abs(t.weight) == 1 else f"{abs(t.weight):g}*{t.metric}"
            sign = "-" if t.weight < 0 else "+"
            name = f"{name} {sign} {term}" if name else (f"-{term}" if t.weight < 0 else term)
        bounds = [
            f"{c.metric}{op}{bound:g}"
            for c in spec.constraints
            for op, bound in ((">=", c.min), ("<=", c.max))
            if bound is not None
        ]
        return [f"{name} - penalty({', '.join(bounds)})" if bounds else name]

    def __call__(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, ...]:
        cand = suggest(trial, self.space, self.pool)
        trial.set_user_attr("candidate", cand.record())
        trial.set_user_attr("label", cand.describe())
        try:
            return self._run(trial, cand)
        except optuna.TrialPruned:
            raise
        except Exception as err:  # recorded on the trial, then the study goes on (optimize(catch=...))
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            raise

    def _run(self, trial: optuna.trial.BaseTrial, cand: Candidate) -> float | tuple[float, ...]:
        steering = cand.steering(self.model, self.vectors)
        model_raw = self.evaluator.model_metrics(self.model, steering) if self.evaluator.needs_model else {}
        texts: list[list[str]] = [[] for _ in self.prompts]
        done_p = done_s = 0
        value: float | tuple[float, ...] = math.nan
        stored: dict[str, float] = {}  # per-metric attributes already written (model metrics do not change)
        budget = self.fidelity.budget(len(self.prompts))
        for rung, (total_p, total_s) in enumerate(budget):
            self._extend(texts, steering, done_p, done_s, total_p, total_s)
            done_p, done_s = total_p, total_s
            rows = texts[:done_p]
            flat = [t for row in rows for t in row]
            prompt_of = [p for p, row in zip(self.prompts, rows, strict=False) for _ in row]
            raw = self.evaluator.text_metrics(flat) | model_raw
            raw |= {k: v.value for k, v in self.evaluator.completion_items(self.model, prompt_of, flat).items()}
            raw |= self.evaluator.derived(raw)
            value = self.objective.value(raw)
            values = value if isinstance(value, tuple) else (value,)
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"objective is not finite: {value} (metrics {raw})")
            trial.set_user_attr("metrics", raw)
            for name, v in raw.items():
                if stored.get(name) != float(v):
                    stored[name] = float(v)
                    trial.set_user_attr(METRIC_ATTR_PREFIX + name, float(v))
            trial.set_user_attr("samples_per_prompt", done_s)
            trial.set_user_attr("prompts_used", done_p)
            if not self.multi and rung < len(budget) - 1:
                step = done_s if self.fidelity.prompts is None else done_p * done_s  # completions so far
                trial.report(float(values[0]), step=step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {done_p} prompts x {done_s} samples")
        if self.sink is not None:
            self.sink.write(trial.number, self.prompts, texts)
        return value

    def _extend(
        self, texts: list[list[str]], steering: Steering, done_p: int, done_s: int, total_p: int, total_s: int
    ) -> None:
        """Grow ``texts`` from ``done_p`` prompts x ``done_s`` samples to ``total_p`` x ``total_s``: new samples of
        the prompts already used, then every sample of the new prompts, each seeded by its own prompt and
        sample index, so the result equals one call on the full budget."""
        calls = [(0, done_p, done_s, total_s - done_s), (done_p, total_p, 0, total_s)]
        for lo, hi, first_sample, n in calls:
            if hi <= lo or n <= 0:
                continue
            cfg = dataclasses.replace(self.generation, n=n, first_sample=first_sample, first_prompt=lo)
            for row, new in zip(texts[lo:hi], generate(self.model, self.prompts[lo:hi], steering, cfg), strict=True):
                row.extend(new)
