"""What a run folder and its study say about a search, for ``steersearch runs`` and ``steersearch status``:
progress by state against the target, the best trial so far, running trials and their workers. Read from
the storage the folder records, so it works while workers are writing, on any storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.config import ExperimentConfig, load_config
from search.outputs import RUN_RECORD, run_record
from search.session import load_run_study
from search.space import Candidate
from search.study import best_finite_trial
from search.workers import WORKER_ATTR, retried_by, tally


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    label: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class RunSummary:
    """One run folder: its study's progress and best trial."""

    folder: Path
    name: str
    model: str
    target: int
    done: int
    states: dict[str, int]
    best: BestTrial | None
    started: datetime | None
    updated: datetime | None
    storage: str
    running: tuple[tuple[int, str, float], ...] = field(default_factory=tuple)  # (number, worker, seconds)


def is_run_folder(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / RUN_RECORD).is_file()


def _best(study: optuna.Study) -> BestTrial | None:
    t = best_finite_trial(study)
    if t is None:
        return None
    record = t.user_attrs.get("candidate")
    label = Candidate.from_record(record).describe() if record else str(t.params)
    return BestTrial(t.number, float(t.value), label, dict(t.user_attrs.get("metrics", {})))  # type: ignore[arg-type]


def _times(trials: list[FrozenTrial]) -> tuple[datetime | None, datetime | None]:
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    stamps = starts + [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (min(starts) if starts else None), (max(stamps) if stamps else None)


def summarize(folder: Path, *, storage: str | None = None, cfg: ExperimentConfig | None = None) -> RunSummary:
    """The summary of the run in ``folder`` (``storage``: a URL with the password the folder does not keep)."""
    cfg = cfg or load_config(folder / "config.yaml")
    record = run_record(folder)
    study = load_run_study(cfg, folder, storage)
    trials = study.get_trials(deepcopy=False)
    retried = retried_by(trials)
    states: dict[str, int] = {}
    for t in trials:
        state = "retried" if t.number in retried else "surplus" if t.user_attrs.get("surplus") else t.state.name.lower()
        states[state] = states.get(state, 0) + 1
    started, updated = _times(trials)
    now = datetime.now()
    running = tuple(
        (t.number, str(t.user_attrs.get(WORKER_ATTR, "?")), (now - t.datetime_start).total_seconds())
        for t in trials
        if t.state == TrialState.RUNNING and t.datetime_start is not None
    )
    return RunSummary(
        folder=folder,
        name=cfg.name,
        model=cfg.model.source or "tiny-topics (embedded)",
        target=int(record.get("target") or cfg.study.n_trials),
        done=tally(study).done,
        states=dict(sorted(states.items())),
        best=_best(study),
        started=started,
        updated=updated,
        storage=record.get("storage") or "study.db",
        running=running,
    )


def find_runs(root: Path) -> list[Path]:
    """Run folders directly under ``root`` (or ``root`` itself), by name."""
    if is_run_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run_folder(p)) if root.is_dir() else []


def describe_states(states: dict[str, Any]) -> str:
    return ", ".join(f"{n} {s}" for s, n in states.items()) or "no trials"
