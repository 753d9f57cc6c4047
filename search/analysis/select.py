"""Selection: the stage between the search and the test, on a split of its own.

The search split's best value is biased upward: with dozens of noisy candidates, the one that scored best is
partly the one whose noise was kindest (the winner's curse). So the winner is not the study's best trial. The
``top_k`` distinct best complete search trials (``select.top_k``; and the best of each candidate source) and
every hand-written pair at its tuned setting (``search.study.tuned_trials``) are re-evaluated on the
validation split: its prompts, gold passages, neutral text and off-target prompts, with fresh seeds. The best
search candidate there displaces the best tuned hand-written pair only if the paired 95% CI of their
difference lies above 0, and only if it *clearly* meets the objective's constraints: the 95% CI of each
constrained metric lies on the allowed side of its bound (a candidate whose fluency interval straddles the
bar meets it on validation by luck as often as not, and then misses it on test). A search candidate that
does not clearly meet them is passed over for the best one that does; otherwise the tuned pair stays the
winner. Only then does ``compare`` touch the test
split, and it records every contender's test value too, so the report can show search, validation and test
values side by side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.compose import METRICS, Constraint
from search.analysis.evaluation import Evaluation, Measured, Method, Paired, SplitEvaluator
from search.config import BaselineSpec, ExperimentConfig, from_dict
from search.outputs import write_text
from search.space import AdditionChoice, Candidate, Pair
from search.study import TUNE_ATTR, tuned_trials
from search.vectors import VectorCache
from steering.model import SteerableModel

logger = logging.getLogger(__name__)

Kind = Literal["tuned", "candidate"]


@dataclass(frozen=True)
class Contender:
    """One intervention in selection: a hand-written pair at its tuned setting (``tuned``) or a search trial
    (``candidate``), with its objective on each split (``test`` once ``compare`` ran)."""

    name: str
    kind: Kind
    number: int | None  # its trial; None for a hand-written pair whose tuning trials all failed or were pruned
    candidate: list[dict[str, Any]]
    search: float | None
    validation: Evaluation
    test: Evaluation | None = None

    def steering_of(self, model: SteerableModel, vectors: VectorCache) -> Method:
        return Method(self.name, Candidate.from_record(self.candidate).steering(model, vectors))


@dataclass(frozen=True)
class Selection:
    """What ``selection.json`` holds: every contender, the winner, the tuned hand-written pair it was held
    against (``reference``), and the paired validation difference of the best search candidate from it."""

    prompts: tuple[str, ...]
    samples_per_prompt: int
    seed: int
    contenders: tuple[Contender, ...]
    winner: str
    reference: str | None  # the best tuned hand-written pair on validation (None: the config has no baselines)
    best_candidate: str | None  # the best search candidate on validation (None: no complete search trial)
    paired: Paired | None  # best_candidate - reference on validation
    rule: Literal["paired", "maximin"] = "paired"  # how the winner was chosen (scalar / multi-objective study)
    passed_over: tuple[str, ...] = ()  # search candidates better on validation that do not clearly meet a constraint
    trials: int = 0  # finished trials of the study when it was made
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # the select section it was made with

    FILE = "selection.json"

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Selection | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None

    def contender(self, name: str) -> Contender:
        return next(c for c in self.contenders if c.name == name)

    def summary(self) -> str:
        """The outcome in words."""
        if self.rule == "maximin":
            if self.winner == self.best_candidate:
                return f"The most balanced Pareto contender on validation (maximin of scaled terms): {self.winner}."
            return f"A hand-written pair is at least as good in every term as the Pareto pick: {self.winner}."
        if self.best_candidate is None:
            return f"No search candidate completed; the winner is {self.winner}."
        if self.reference is None or self.paired is None:
            return f"The winner is the best search candidate on validation, {self.winner} (no hand-written pair)."
        d = self.paired.diff
        shown = f"{d.mean:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]"
        skipped = (
            f"{len(self.passed_over)} better-scoring candidate(s) do not clearly meet the objective's constraints "
            "on validation (a constrained metric's 95% CI crosses its bound) and were passed over. "
            if self.passed_over
            else ""
        )
        if self.paired.verdict == "beats" and self.winner == self.best_candidate:
            return (
                f"{skipped}The best search candidate beats the tuned hand-written pair on validation ({shown}): "
                "it wins."
            )
        if self.paired.verdict == "beats":
            return (
                f"{skipped}The best search candidate beats the tuned hand-written pair on validation ({shown}) but "
                "does not clearly meet the objective's constraints, so the tuned hand-written pair stays the winner."
            )
        return (
            f"{skipped}The best search candidate {self.paired.verdict} the tuned hand-written pair on validation "
            f"({shown}), so the tuned hand-written pair stays the winner."
        )


def source_of(record: list[dict[str, Any]]) -> str:
    """A candidate's source: ``hand-written``, ``template``, ``adversarial``, ``learned (from zeros)``,
    ``learned (fine-tuned pair)``; several additions are ``mixed`` unless they agree."""
    sources = {_source_label(r) for r in record}
    return sources.pop() if len(sources) == 1 else "mixed"


def _source_label(r: dict[str, Any]) -> str:
    source = str(r.get("source", "hand-written"))
    if source == "learned" and r.get("fit"):
        return f"learned ({'fine-tuned pair' if r['fit']['init'] == 'pair' else 'from zeros'})"
    return source


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials with a finite value, best first (ties: the earlier trial first)."""
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value) and t.user_attrs.get("candidate")
    ]
    return sorted(trials, key=lambda t: (-sign * float(t.value), t.number))  # type: ignore[arg-type]


def _value(trial: FrozenTrial) -> float:
    assert trial.value is not None
    return float(trial.value)


def _key(record: list[dict[str, Any]]) -> str:
    return json.dumps(record, sort_keys=True)


def written_candidate(b: BaselineSpec) -> Candidate:
    """A hand-written intervention as the config writes it: one addition of its pair."""
    return Candidate((AdditionChoice(Pair(*b.pair), b.layer, b.coeff, b.frac, b.mask, b.positions),))


class Entry(NamedTuple):
    """A contender before validation: its row name, trial, candidate record and search-split value."""

    name: str
    number: int | None
    record: list[dict[str, Any]]
    search: float | None


def tuned_rows(cfg: ExperimentConfig, study: optuna.Study) -> list[Entry]:
    """Each distinct hand-written pair at its tuned setting: ``(name, trial, candidate record, search value)``;
    a pair without a complete tuning trial at the setting first written for it (no trial, no value)."""
    tuned = tuned_trials(study)
    rows: list[Entry] = []
    seen: set[str] = set()
    for b in cfg.baselines:
        label = Pair(*b.pair).label
        if label in seen:
            continue
        seen.add(label)
        trial = tuned.get(label)
        if trial is not None:
            record = trial.user_attrs["candidate"]
            name = f"tuned hand-written: {Candidate.from_record(record).describe()}"
            rows.append(Entry(name, trial.number, record, _value(trial)))
        else:
            cand = written_candidate(b)
            name = f"hand-written, not tuned: {cand.describe()}"
            rows.append(Entry(name, None, cand.record(), None))
    return rows


def candidate_rows(cfg: ExperimentConfig, study: optuna.Study, exclude: set[str]) -> list[Entry]:
    """The ``select.top_k`` distinct best complete search trials that are not tuning trials (and whose
    candidate is not in ``exclude``), then, with ``compare.per_source``, the best of each source not among them."""
    chosen: list[Entry] = []
    seen = set(exclude)
    best_of_source: dict[str, FrozenTrial] = {}
    for t in _ranked(study):
        if t.user_attrs.get(TUNE_ATTR) is not None:
            continue
        record = t.user_attrs["candidate"]
        best_of_source.setdefault(source_of(record), t)
        key = _key(record)
        if key in seen or len(chosen) >= cfg.select.top_k:
            continue
        seen.add(key)
        rank = len(chosen) + 1
        name = f"search #{rank} (trial {t.number}): {Candidate.from_record(record).describe()}"
        chosen.append(Entry(name, t.number, record, _value(t)))
    if cfg.compare.per_source:
        for source, t in sorted(best_of_source.items()):
            record = t.user_attrs["candidate"]
            if _key(record) not in seen:
                seen.add(_key(record))
                name = f"best {source} (trial {t.number}): {Candidate.from_record(record).describe()}"
                chosen.append(Entry(name, t.number, record, _value(t)))
    return chosen


def pareto_rows(cfg: ExperimentConfig, study: optuna.Study) -> list[Entry]:
    """A multi-objective study's contenders: up to ``select.top_k`` trials of its Pareto front (best first term
    first), and each hand-written pair as written (a multi-objective study has no scalar to tune it on)."""
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
    front = [t for t in study.best_trials if t.user_attrs.get("candidate") and t.user_attrs.get(TUNE_ATTR) is None]
    front.sort(key=lambda t: (-sign * t.values[0], t.number))
    rows: list[Entry] = []
    seen: set[str] = set()
    for t in front:
        key = _key(t.user_attrs["candidate"])
        if key not in seen and len(rows) < cfg.select.top_k:
            seen.add(key)
            cand = Candidate.from_record(t.user_attrs["candidate"])
            rows.append(
                Entry(f"Pareto #{len(rows) + 1} (trial {t.number}): {cand.describe()}", t.number, cand.record(), None)
            )
    return rows


def _as_written(cfg: ExperimentConfig) -> list[Entry]:
    rows, seen = [], set()
    for b in cfg.baselines:
        cand = written_candidate(b)
        if _key(cand.record()) not in seen:
            seen.add(_key(cand.record()))
            rows.append(Entry(f"hand-written, not tuned: {cand.describe()}", None, cand.record(), None))
    return rows


def maximin(points: dict[str, list[float]], higher_is_better: list[bool]) -> str:
    """The stated rule for a multi-objective winner: scale each term to [0, 1] across the points (1 = the best
    point in that term's direction, a term where all points agree counts 1) and take the point whose worst
    scaled term is the best (the most balanced trade-off; ties: the first).

    Example:
        >>> maximin({"a": [0.9, 3.0], "b": [0.7, 1.0], "c": [0.5, 0.1]}, [True, False])
        'b'
    """
    names = list(points)
    scaled: dict[str, list[float]] = {n: [] for n in names}
    for j, up in enumerate(higher_is_better):
        col = [points[n][j] for n in names]
        lo, hi = min(col), max(col)
        for n, v in zip(names, col, strict=True):
            frac = 1.0 if hi == lo else (v - lo) / (hi - lo)
            scaled[n].append(frac if up else 1.0 - frac)
    return max(names, key=lambda n: min(scaled[n]))


def dominates(a: list[float], b: list[float], higher_is_better: list[bool]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every term and better in one."""
    pairs = [(x, y) if up else (-x, -y) for x, y, up in zip(a, b, higher_is_better, strict=True)]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def _rank_key(c: Contender) -> tuple[float, float]:
    return (c.validation.value, c.search if c.search is not None else -math.inf)


def best_on_validation(contenders: list[Contender], kind: Kind) -> str | None:
    """The contender of ``kind`` with the best validation objective; a tie (e.g. several at steer_score 0) goes
    to the better search value, then to the first."""
    pool = [c for c in contenders if c.kind == kind and c.validation.objective is not None]
    if not pool:
        return None
    return max(pool, key=_rank_key).name


def clearly_meets(evaluation: Evaluation, constraints: Sequence[Constraint]) -> bool:
    """Whether the 95% CI of every constrained metric lies on the allowed side of its bounds (a metric the
    evaluation did not measure cannot be shown to meet its bound)."""
    for c in constraints:
        interval = evaluation.metrics.get(c.metric)
        if interval is None:
            return False
        if (c.min is not None and interval.lo < c.min) or (c.max is not None and interval.hi > c.max):
            return False
    return True


def _clear_candidate(contenders: list[Contender], constraints: Sequence[Constraint]) -> tuple[str | None, list[str]]:
    """The best search candidate on validation that clearly meets the constraints, and the better ones passed
    over because they do not (best first; every candidate when none meets them)."""
    ranked = sorted(
        (c for c in contenders if c.kind == "candidate" and c.validation.objective is not None),
        key=_rank_key,
        reverse=True,
    )
    passed: list[str] = []
    for c in ranked:
        if clearly_meets(c.validation, constraints):
            return c.name, passed
        passed.append(c.name)
    return None, passed


def select_winner(
    cfg: ExperimentConfig, study: optuna.Study, validation: SplitEvaluator, vectors: VectorCache
) -> Selection:
    """Evaluate the contenders on the validation split and choose the winner (module docstring). A
    multi-objective study's winner is the Pareto-front contender chosen by ``maximin`` on the validation values
    of its terms, unless a hand-written pair dominates it there; no paired difference is given."""
    if validation.split != "validation":
        raise ValueError(f"selection runs on the validation split, not {validation.split!r}")
    multi = len(study.directions) > 1
    if multi:
        tuned, candidates = _as_written(cfg), pareto_rows(cfg, study)
    else:
        tuned = tuned_rows(cfg, study)
        candidates = candidate_rows(cfg, study, {_key(e.record) for e in tuned})
    measured: dict[str, Measured] = {}
    contenders = []
    rows: list[tuple[Kind, Entry]] = [*(("tuned", e) for e in tuned), *(("candidate", e) for e in candidates)]
    for kind, (name, number, record, value) in rows:
        logger.info("validating %s", name)
        method = Method(name, Candidate.from_record(record).steering(validation.model, vectors))
        measured[name] = validation.measure(method)
        evaluation = validation.evaluation(measured[name])
        contenders.append(Contender(name, kind, number, record, value, evaluation))
    if multi:
        return _select_multi(cfg, validation, contenders)

    reference = best_on_validation(contenders, "tuned")
    clear, passed_over = _clear_candidate(contenders, cfg.objective.constraints)
    # with no candidate that clearly meets the constraints, the best one (first of those passed over) is still
    # held against the reference (and reported), but cannot displace it
    best_candidate = clear if clear is not None else next(iter(passed_over), None)
    paired = None
    if reference is not None and best_candidate is not None:
        paired = validation.paired(measured[best_candidate], measured[reference])
    if best_candidate is None:
        winner = reference
    elif reference is None or (clear is not None and paired is not None and paired.verdict == "beats"):
        winner = best_candidate
    else:
        winner = reference
    if winner is None:
        raise ValueError("nothing to select: the study has no complete trial and the config no baseline")
    selection = _selection(validation, contenders, winner, reference, best_candidate, paired, "paired")
    return dataclasses.replace(selection, passed_over=tuple(passed_over if clear is not None else ()))


def _select_multi(cfg: ExperimentConfig, validation: SplitEvaluator, contenders: list[Contender]) -> Selection:
    terms = [t.metric for t in cfg.objective.terms]
    up = [METRICS[m] == "maximize" for m in terms]

    def values(c: Contender) -> list[float]:
        return [c.validation.metrics[m].mean if m in c.validation.metrics else c.validation.corpus[m] for m in terms]

    candidates = {c.name: values(c) for c in contenders if c.kind == "candidate"}
    best_candidate = maximin(candidates, up) if candidates else None
    winner = best_candidate
    for c in contenders:
        if c.kind == "tuned" and (winner is None or dominates(values(c), candidates[winner], up)):
            winner = c.name  # a hand-written pair that is at least as good in every term stays the winner
    if winner is None:
        raise ValueError("nothing to select: the study has no Pareto front and the config no baseline")
    return _selection(validation, contenders, winner, None, best_candidate, None, "maximin")


def _selection(
    validation: SplitEvaluator,
    contenders: list[Contender],
    winner: str,
    reference: str | None,
    best_candidate: str | None,
    paired: Paired | None,
    rule: Literal["paired", "maximin"],
) -> Selection:
    return Selection(
        prompts=tuple(validation.data.prompts.part("validation")),
        samples_per_prompt=validation.n,
        seed=validation.seed,
        contenders=tuple(contenders),
        winner=winner,
        reference=reference,
        best_candidate=best_candidate,
        paired=paired,
        rule=rule,
    )
