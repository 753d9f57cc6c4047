"""Several workers on one study: distinct sampler seeds, stale trials, and a budget that is met exactly.

Any number of ``steersearch run`` processes, on one machine or several, may share a study's storage.

- **Seeds.** The process that creates the study is worker ``"0"`` and samples with the study seed, so a
  fresh single-worker run is reproducible. Every other process (extra ``--workers``, a second terminal, a
  resume) is ``host:pid`` and samples with a seed derived from the study seed and that identity, so no two
  workers replay the same proposals (TPE's ``constant_liar`` then keeps them off each other's running trials).
- **Stale trials.** A worker that dies (kill -9, a lost machine) leaves its trial RUNNING. On RDB storages
  (SQLite, PostgreSQL) Optuna's heartbeat marks it failed after ``grace_period`` seconds and
  ``RetryHeartbeatStaleTrialCallback`` enqueues a copy with the same parameters. Journal storage has no
  heartbeat: there a RUNNING trial is stale when it started more than ``stale_after`` seconds ago. On every
  storage, a RUNNING trial whose worker ran on this host and whose process is gone is stale at once (so a
  rerun after kill -9 retries the killed trial without waiting out a grace period).
- **Budget.** The target counts finished trials (complete, pruned, failed), leaving out trials that were
  retried (their copy counts) and surplus ones. A worker only starts a trial while finished + running trials
  are below the target; when two workers start one in the same instant, the trial numbered past the target
  is recorded failed as ``surplus`` and not run, so the study ends at exactly the target.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

CREATOR = "0"
WORKER_ATTR = "worker"  # user attribute: the identity of the process that ran the trial
SURPLUS_ATTR = "surplus"
FAIL_REASON_ATTR = "fail_reason"

Callback = Callable[[optuna.Study, FrozenTrial], None]
Objective = Callable[[optuna.Trial], float | Sequence[float]]


def this_worker() -> str:
    """This process's identity on a shared storage: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(seed: int, identity: str) -> int:
    """The sampler seed of worker ``identity`` (the creator keeps the study seed).

    Example:
        >>> worker_seed(0, "0"), worker_seed(0, "host:42") != worker_seed(0, "host:43")
        (0, True)
    """
    if identity == CREATOR:
        return seed
    digest = hashlib.sha256(f"{seed}:{identity}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def retried_by(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """Failed trial number -> the number of the trial that retried it."""
    out: dict[int, int] = {}
    for t in trials:
        history = t.system_attrs.get("retry_history") or []
        if history:
            out[history[-1]] = t.number
    return out


def _uncounted(trials: Sequence[FrozenTrial]) -> set[int]:
    gone = set(retried_by(trials))
    return gone | {t.number for t in trials if t.user_attrs.get(SURPLUS_ATTR)}


@dataclass(frozen=True)
class Tally:
    """What a study's trials count for toward its target."""

    done: int  # complete + pruned + failed, less retried and surplus trials
    running: int
    waiting: int


def tally(study: optuna.Study) -> Tally:
    trials = study.get_trials(deepcopy=False)
    gone = _uncounted(trials)
    counted = [t for t in trials if t.number not in gone]
    return Tally(
        done=sum(t.state.is_finished() for t in counted),
        running=sum(t.state == TrialState.RUNNING for t in counted),
        waiting=sum(t.state == TrialState.WAITING for t in counted),
    )


def holds_slot(study: optuna.Study, number: int, target: int) -> bool:
    """Whether trial ``number`` is within the target (fewer than ``target`` counted trials come before it)."""
    trials = study.get_trials(deepcopy=False)
    gone = _uncounted(trials)
    return sum(1 for t in trials if t.number < number and t.number not in gone) < target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _why_stale(t: FrozenTrial, stale_after: float | None, now: datetime) -> str | None:
    host, _, pid = str(t.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return f"its worker {host}:{pid} is gone"
    started = t.datetime_start
    if stale_after is not None and started is not None and (now - started).total_seconds() > stale_after:
        return f"it has run for more than {stale_after:g} s"
    return None


def fail_stale_trials(study: optuna.Study, *, stale_after: float, max_retry: int) -> int:
    """Fail the study's stale RUNNING trials and enqueue a retry of each; returns how many were failed.

    A trial whose worker ran on this host and is gone is stale at once, on any storage. Beyond that, RDB
    storages decide by heartbeat (Optuna's ``fail_stale_trials``) and the others by ``stale_after``."""
    storage = study._storage  # Optuna has no public accessor; whether a heartbeat runs is the storage's
    heartbeat = bool(getattr(storage, "get_heartbeat_interval", lambda: None)())
    before = len(retried_by(study.get_trials(deepcopy=False)))
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    now, retry = datetime.now(), retry_callback(max_retry)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _why_stale(t, None if heartbeat else stale_after, now)
        if reason is None:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        logger.warning("trial %d is stale (%s): failed, retried with the same parameters", t.number, reason)
        retry(study, study.get_trials(deepcopy=False)[t.number])
    return len(retried_by(study.get_trials(deepcopy=False))) - before


class SurplusTrial(Exception):
    """The study reached its target while this trial was being created; it is not run."""


def budgeted(study: optuna.Study, objective: Objective, target: int) -> Objective:
    """Wrap an objective so that a trial past the target is recorded failed as surplus instead of run."""
    identity = this_worker()

    def run(trial: optuna.Trial) -> float | Sequence[float]:
        trial.set_user_attr(WORKER_ATTR, identity)
        if not holds_slot(study, trial.number, target):
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.set_user_attr(FAIL_REASON_ATTR, "surplus: the study reached its target as this trial started")
            raise SurplusTrial(f"trial {trial.number} is past the target of {target}")
        return objective(trial)

    return run


def run_until(
    study: optuna.Study,
    objective: Objective,
    *,
    target: int,
    timeout: float | None = None,
    callbacks: Sequence[Callback] = (),
    stale_after: float = 21600.0,
    max_retry: int = 2,
    poll: float = 2.0,
    on_wait: Callable[[Tally], None] | None = None,
) -> Tally:
    """Run trials of ``study`` in this process until it has ``target`` counted finished trials.

    Exceptions in a trial are recorded on it (state FAIL) and the study goes on. While the remaining slots
    are held by other workers' running trials, this worker waits (checking for stale ones every ``poll``
    seconds) so that a trial whose worker dies is still retried. ``timeout``: start no trial after this many
    seconds. Returns the final tally."""
    fn = budgeted(study, objective, target)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fail_stale_trials(study, stale_after=stale_after, max_retry=max_retry)
        t = tally(study)
        if t.done >= target or (deadline is not None and time.monotonic() >= deadline):
            return t
        if t.waiting == 0 and t.done + t.running >= target:
            if on_wait is not None:
                on_wait(t)
            time.sleep(poll)
            continue
        study.optimize(fn, n_trials=1, catch=(Exception,), callbacks=list(callbacks))
