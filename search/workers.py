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
- **Batches.** A worker runs its trials ``batch`` at a time with Optuna's ask-and-tell (``run_batch``): it
  asks for no more trials than the slots still free, begins each (its parameters suggested) before asking
  the next, lets the objective run them together, and tells each trial as it ends, calling the callbacks
  after each as ``study.optimize`` does. Ask-and-tell has no heartbeat of its own, so one thread beats for
  every running trial of the batch on RDB storages. ``batch`` 1 proposes, runs and records exactly what
  ``study.optimize`` did.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its value (complete), or the exception that ended it (``optuna.TrialPruned``: pruned;
    any other: failed)."""

    value: float | tuple[float, ...] | None = None
    error: BaseException | None = None

    @property
    def state(self) -> TrialState:
        if self.error is None:
            return TrialState.COMPLETE
        return TrialState.PRUNED if isinstance(self.error, optuna.TrialPruned) else TrialState.FAIL

    def result(self) -> float | tuple[float, ...]:
        """The value, or raise the exception (what a plain Optuna objective does)."""
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


Done = Callable[[Any, Outcome], None]
"""Told by a batch objective as each of its trials ends: ``done(trial, outcome)``."""


class BatchObjective(Protocol):
    """An objective that runs several trials together (``search.objective.SteeringObjective``).

    ``begin(trial)`` is called right after each ``study.ask`` and before the next, so that the sampler sees
    the trial's parameters when it proposes the next (TPE's ``constant_liar``); it returns a token, or an
    ``Outcome`` if the trial ended already. ``finish(tokens, done)`` runs the begun trials and calls
    ``done(trial, outcome)`` exactly once for each, as soon as it ends."""

    def begin(self, trial: optuna.Trial) -> Any: ...

    def finish(self, batch: Sequence[Any], done: Done) -> None: ...


class OneByOne:
    """A plain objective (``trial -> value``) as a ``BatchObjective`` that runs its trials one after another."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def begin(self, trial: optuna.Trial) -> optuna.Trial:
        return trial

    def finish(self, batch: Sequence[optuna.Trial], done: Done) -> None:
        for trial in batch:
            try:
                value = self.objective(trial)
            except Exception as err:
                done(trial, Outcome(error=err))
                continue
            done(trial, Outcome(value=value if isinstance(value, float | int) else tuple(value)))


class _Heartbeats:
    """Records a heartbeat for each running trial of a batch on RDB storages, every ``heartbeat_interval``
    seconds from one thread (what Optuna's ``optimize`` does for its one trial, which ask-and-tell does not)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        if self.interval:
            self.storage.record_heartbeat(trial_id)
            with self.lock:
                self.ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def __enter__(self) -> _Heartbeats:
        if self.interval:
            self.thread = threading.Thread(target=self._beat, name="steersearch-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = sorted(self.ids)
            for trial_id in ids:
                self.storage.record_heartbeat(trial_id)


def _ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():  # we run the heartbeat ourselves (_Heartbeats)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return study.ask()


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    """Finish ``trial`` with ``outcome`` and log it as ``study.optimize`` does."""
    state = outcome.state
    if state == TrialState.COMPLETE:
        frozen = study.tell(trial, outcome.value)
        if frozen.state == TrialState.COMPLETE:
            study._log_completed_trial(frozen.values, frozen.number, frozen.params)  # Optuna's own line
        return
    study.tell(trial, state=state)
    if state == TrialState.PRUNED:
        logger.info("Trial %d pruned. %s", trial.number, outcome.error)
    else:
        err = outcome.error
        logger.warning(
            "Trial %d failed with parameters: %s because of the following error: %r.",
            trial.number,
            trial.params,
            err,
            exc_info=(type(err), err, err.__traceback__) if err is not None and err.__traceback__ is not None else None,
        )


def run_batch(
    study: optuna.Study,
    objective: BatchObjective,
    k: int,
    *,
    target: int,
    callbacks: Sequence[Callback] = (),
) -> int:
    """Ask for up to ``k`` trials, run them together, tell each its outcome as it ends, and call ``callbacks``
    after each; returns how many trials were asked.

    A trial numbered past ``target`` (another worker took the slot in the same instant) is told failed as
    surplus and not run, and no further trial is asked. Exceptions of the objective are recorded on the trials
    they end (state FAIL) and the study goes on; an exception from a callback, or ``KeyboardInterrupt``, fails
    the batch's unfinished trials and propagates."""
    identity = this_worker()
    pending: dict[int, optuna.Trial] = {}
    in_callback = False
    with _Heartbeats(study._storage) as heartbeats:

        def done(trial: optuna.Trial, outcome: Outcome) -> None:
            nonlocal in_callback
            if pending.pop(trial._trial_id, None) is None:
                raise AssertionError(f"trial {trial.number} ended twice")
            heartbeats.discard(trial._trial_id)
            _tell(study, trial, outcome)
            frozen = study._storage.get_trial(trial._trial_id)
            in_callback = True
            for callback in callbacks:
                callback(study, copy.deepcopy(frozen))
            in_callback = False

        asked, begun = 0, []
        try:
            for _ in range(k):
                trial = _ask(study)
                asked += 1
                pending[trial._trial_id] = trial
                heartbeats.add(trial._trial_id)
                trial.set_user_attr(WORKER_ATTR, identity)
                if not holds_slot(study, trial.number, target):
                    trial.set_user_attr(SURPLUS_ATTR, True)
                    trial.set_user_attr(FAIL_REASON_ATTR, "surplus: the study reached its target as this trial started")
                    done(trial, Outcome(error=SurplusTrial(f"trial {trial.number} is past the target of {target}")))
                    break
                started = objective.begin(trial)
                if isinstance(started, Outcome):
                    done(trial, started)
                else:
                    begun.append(started)
            if begun:
                objective.finish(begun, done)
        except BaseException as err:
            # What escaped the objective (or a callback, or Ctrl-C) ends the batch's unfinished trials as failed.
            propagate = in_callback or not isinstance(err, Exception)
            for trial in list(pending.values()):
                with contextlib.suppress(Exception):
                    trial.set_user_attr(FAIL_REASON_ATTR, f"{type(err).__name__}: {err}")
                if propagate:
                    pending.pop(trial._trial_id)
                    with contextlib.suppress(Exception):
                        _tell(study, trial, Outcome(error=err))
                else:
                    done(trial, Outcome(error=err))
            if propagate:
                raise
            logger.warning(
                "a batch of %d trials raised %s: %s; its unfinished trials failed", asked, type(err).__name__, err
            )
    if pending:
        raise AssertionError(f"the objective did not end trials {sorted(t.number for t in pending.values())}")
    return asked


def run_until(
    study: optuna.Study,
    objective: BatchObjective,
    *,
    target: int,
    batch: int = 1,
    timeout: float | None = None,
    callbacks: Sequence[Callback] = (),
    stale_after: float = 21600.0,
    max_retry: int = 2,
    poll: float = 2.0,
    on_wait: Callable[[Tally], None] | None = None,
) -> Tally:
    """Run trials of ``study`` in this process until it has ``target`` counted finished trials.

    Trials run ``batch`` at a time (``run_batch``), never more than the slots still free (target less
    finished and running trials, all workers'), so the budget is met exactly. Exceptions in a trial are
    recorded on it (state FAIL) and the study goes on. While the remaining slots are held by other workers'
    running trials, this worker waits (checking for stale ones every ``poll`` seconds) so that a trial whose
    worker dies is still retried. ``timeout``: start no batch after this many seconds. Returns the final
    tally."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
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
        run_batch(study, objective, max(1, min(batch, target - t.done - t.running)), target=target, callbacks=callbacks)
