"""The Optuna objective: trial -> candidate -> completions -> metrics -> value, with multi-fidelity pruning, for
one trial or a batch of trials evaluated together.

Rungs are cumulative (prompts, samples per prompt), e.g. ``(8, 2) -> (32, 2)``. Each rung generates only the
new completions (``GenerationConfig.first_sample``/``first_prompt``), so the full-budget completions of a
survivor are exactly what a single full call would give. After each rung but the last, the value is reported
and the pruner may stop the trial. Model-based metrics (perplexity ratio, KL, gold log-likelihood) do not
depend on samples and are measured once.

A batch (``begin`` each trial, then ``finish`` them together; ``search.workers`` drives it with Optuna's
ask-and-tell) shares its forward passes: the rows of one generation batch belong to different trials, each
with its own steering and seeds, and every trial's completions go through the scorers together. A trial's
completions and metrics are those it would get alone (to floating-point tolerance), and one trial that raises
fails alone.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import optuna

from objectives import Evaluator, Objective
from search.attrs import set_user_attrs
from search.config.features import FidelitySpec
from search.config.space import SpaceSpec
from search.space import Candidate, Pair, suggest
from search.vectors import VectorCache
from search.workers import FAIL_REASON_ATTR, Done, Outcome
from steering import GenerationConfig, Steering, generate_candidates
from steering.atomic import atomic_write_text
from steering.model import SteerableModel

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


@dataclass(frozen=True)
class Begun:
    """A trial whose candidate is chosen (``SteeringObjective.begin``), waiting to be run with its batch."""

    trial: optuna.trial.BaseTrial
    cand: Candidate


@dataclass(eq=False)  # compared and hashed by identity
class _Running:
    """A trial of a batch between rungs: its steering, model metrics, completions and last value."""

    trial: optuna.trial.BaseTrial
    steering: Steering
    model_raw: dict[str, float]
    texts: list[list[str]]  # [prompt][sample]
    stored: dict[str, float] = field(default_factory=dict)  # metric attributes already written
    value: float | tuple[float, ...] = math.nan


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
        """Run one trial (``study.optimize``, a ``FixedTrial``): its value, or the exception that ended it
        (``optuna.TrialPruned`` when pruned)."""
        begun = self.begin(trial)
        ended: list[Outcome] = []
        if isinstance(begun, Outcome):
            ended.append(begun)
        else:
            self.finish([begun], lambda _trial, outcome: ended.append(outcome))
        return ended[0].result()

    def begin(self, trial: optuna.trial.BaseTrial) -> Begun | Outcome:
        """Suggest the trial's candidate (call it right after ``study.ask``, before asking the next trial, so
        that the sampler sees these parameters while it proposes the next); an ``Outcome`` if that failed."""
        try:
            cand = suggest(trial, self.space, self.pool)
            set_user_attrs([(trial, {"candidate": cand.record(), "label": cand.describe()})])
        except Exception as err:
            return self._failed(trial, err)
        return Begun(trial, cand)

    def finish(self, batch: Sequence[Begun], done: Done) -> None:
        """Run begun trials together and call ``done(trial, outcome)`` as each ends.

        Each rung generates the new completions of every trial still running in shared batches
        (``generate_candidates``: each row its own candidate and seed, so a trial's completions do not depend
        on its batch-mates) and scores them in shared encoder passes; then each trial reports, and those the
        pruner stops end there while the others continue together. A trial that raises (a NaN vector, NaN
        logits, out of memory, a scorer error, a non-finite objective) ends failed with its reason: a shared
        step that raises is redone one trial at a time, so only the trial that caused it fails."""
        live = []
        for b in batch:
            try:
                steering = b.cand.steering(self.model, self.vectors)
                model_raw = self.evaluator.model_metrics(self.model, steering) if self.evaluator.needs_model else {}
            except Exception as err:
                done(b.trial, self._failed(b.trial, err))
                continue
            live.append(_Running(b.trial, steering, model_raw, [[] for _ in self.prompts]))
        budget = self.fidelity.budget(len(self.prompts))
        done_p = done_s = 0
        for rung, (total_p, total_s) in enumerate(budget):
            grown = self._shared(live, partial(self._grow, lo=(done_p, done_s), hi=(total_p, total_s)), done)
            for r, new in grown:
                for row, extra in zip(r.texts, new, strict=True):
                    row.extend(extra)
            done_p, done_s = total_p, total_s
            scored = self._shared([r for r, _ in grown], partial(self._score, n_prompts=done_p), done)
            valued = []
            for r, raw in scored:
                try:
                    valued.append((r, self._value(r, raw, done_p, done_s)))
                except Exception as err:
                    done(r.trial, self._failed(r.trial, err))
            stored = self._shared([r for r, _ in valued], partial(self._store, dict(valued)), done)
            live = []
            for r, _ in stored:
                try:
                    pruned = self._report(r, rung, len(budget), done_p, done_s)
                except Exception as err:
                    done(r.trial, self._failed(r.trial, err))
                    continue
                if pruned is not None:
                    done(r.trial, Outcome(error=pruned))
                else:
                    live.append(r)
        for r in live:
            try:
                if self.sink is not None:
                    self.sink.write(r.trial.number, self.prompts, r.texts)
            except Exception as err:
                done(r.trial, self._failed(r.trial, err))
                continue
            done(r.trial, Outcome(value=r.value))

    @staticmethod
    def _failed(trial: optuna.trial.BaseTrial, err: Exception) -> Outcome:
        reason = f"{type(err).__name__}: {err}"
        try:
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
        except Exception:  # the storage may be what failed; the outcome still carries the reason
            logger.warning("trial %d: could not record its fail reason (%s)", trial.number, reason)
        return Outcome(error=err)

    def _shared(
        self, live: Sequence[_Running], step: Callable[[list[_Running]], list[T]], done: Done
    ) -> list[tuple[_Running, T]]:
        """``step`` on every running trial at once; if it raises, on each trial alone, failing those that raise."""
        if not live:
            return []
        try:
            return list(zip(live, step(list(live)), strict=True))
        except Exception as err:
            if len(live) == 1:
                done(live[0].trial, self._failed(live[0].trial, err))
                return []
            logger.info(
                "a shared step of %d trials raised (%s: %s); redoing it one trial at a time",
                len(live),
                type(err).__name__,
                err,
            )
        out = []
        for r in live:
            out += self._shared([r], step, done)
        return out

    def _grow(self, live: Sequence[_Running], lo: tuple[int, int], hi: tuple[int, int]) -> list[list[list[str]]]:
        """The completions that take each trial from ``lo`` = (prompts, samples) to ``hi``, per trial and prompt:
        new samples of the prompts already used, then every sample of the new prompts, each seeded by its own
        prompt and sample index, so that the result equals one call on the full budget."""
        (done_p, done_s), (total_p, total_s) = lo, hi
        new: list[list[list[str]]] = [[[] for _ in self.prompts] for _ in live]
        steering = [r.steering for r in live]
        for first_p, end_p, first_s, n in ((0, done_p, done_s, total_s - done_s), (done_p, total_p, 0, total_s)):
            if end_p <= first_p or n <= 0:
                continue
            cfg = dataclasses.replace(self.generation, n=n, first_sample=first_s, first_prompt=first_p)
            out = generate_candidates(self.model, self.prompts[first_p:end_p], steering, cfg)
            for rows, cand_rows in zip(new, out, strict=True):
                for p, samples in enumerate(cand_rows, start=first_p):
                    rows[p].extend(samples)
        return new

    def _score(self, live: Sequence[_Running], n_prompts: int) -> list[dict[str, float]]:
        """Raw metrics of each trial's completions so far (text metrics and completion perplexity in shared
        passes; model-based metrics were measured once, at the start)."""
        flats = [[t for row in r.texts[:n_prompts] for t in row] for r in live]
        prompt_of = [[p for p, row in zip(self.prompts, r.texts[:n_prompts], strict=False) for _ in row] for r in live]
        text = self.evaluator.text_items_many(flats)
        rows = max(self.generation.batch_size, *(len(f) for f in flats))  # one trial's rows are never split
        completion = self.evaluator.completion_items_many(
            self.model, list(zip(prompt_of, flats, strict=True)), rows_per_pass=rows
        )
        return [
            {k: v.value for k, v in t.items()} | r.model_raw | {k: v.value for k, v in c.items()}
            for r, t, c in zip(live, text, completion, strict=True)
        ]

    def _value(self, r: _Running, raw: dict[str, float], done_p: int, done_s: int) -> dict[str, Any]:
        """Value the trial from its raw metrics (kept as ``r.value``); the user attributes to store for it."""
        raw |= self.evaluator.derived(raw)
        value = self.objective.value(raw)
        values = value if isinstance(value, tuple) else (value,)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"objective is not finite: {value} (metrics {raw})")
        r.value = value
        attrs: dict[str, Any] = {"metrics": raw}
        for name, v in raw.items():
            if r.stored.get(name) != float(v):  # model metrics do not change between rungs
                attrs[METRIC_ATTR_PREFIX + name] = float(v)
        return attrs | {"samples_per_prompt": done_s, "prompts_used": done_p}

    def _store(self, attrs: dict[_Running, dict[str, Any]], live: Sequence[_Running]) -> list[None]:
        """Write the trials' attributes, all in one storage transaction where the storage allows it."""
        set_user_attrs([(r.trial, attrs[r]) for r in live])
        for r in live:
            r.stored |= {
                k.removeprefix(METRIC_ATTR_PREFIX): v for k, v in attrs[r].items() if k.startswith(METRIC_ATTR_PREFIX)
            }
        return [None] * len(live)

    def _report(self, r: _Running, rung: int, n_rungs: int, done_p: int, done_s: int) -> optuna.TrialPruned | None:
        """Report the rung's value to the pruner; the ``TrialPruned`` to end the trial with if it says so."""
        if self.multi or rung == n_rungs - 1:
            return None
        value = r.value[0] if isinstance(r.value, tuple) else r.value
        step = done_s if self.fidelity.prompts is None else done_p * done_s  # completions so far
        r.trial.report(float(value), step=step)
        if r.trial.should_prune():
            return optuna.TrialPruned(f"pruned after {done_p} prompts x {done_s} samples")
        return None
