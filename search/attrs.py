"""User attributes of several trials in one storage transaction.

A trial stores about twenty user attributes after each rung (``metrics`` and one ``metric_<name>`` each).
Optuna writes each ``set_user_attr`` in a transaction of its own; on SQLite every commit waits for the disk
(about 20 ms here: 22 attributes took 430 ms one by one, 30 ms in one transaction), and on PostgreSQL every
commit is a round trip. On RDB storages ``set_user_attrs`` writes all the attributes of all the given trials
in one transaction through the storage's own upsert (``RDBStorage._set_trial_attr_without_commit``, the code
``set_trial_user_attr`` runs, which also refuses a finished trial); on any other storage, or a trial without
one (``FixedTrial``), it calls ``set_user_attr`` for each. The stored result is the same either way
(``tests/test_batch.py`` checks it, and that RDB storages take the one-transaction path, so an Optuna
upgrade that moves these internals is noticed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna

_models: Any
try:  # Optuna internals (pinned in constraints.txt); without them every attribute is written on its own
    from optuna.storages._rdb import models as _models
    from optuna.storages._rdb.storage import _create_scoped_session
except ImportError:  # pragma: no cover
    _models = None


def _rdb_backend(trial: optuna.trial.BaseTrial) -> Any:
    storage = getattr(trial, "storage", None)
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDB storages in a cache
    if _models is None or not isinstance(backend, optuna.storages.RDBStorage):
        return None
    return backend if hasattr(backend, "_set_trial_attr_without_commit") else None


def one_transaction(trials: Sequence[optuna.trial.BaseTrial]) -> bool:
    """Whether ``set_user_attrs`` writes these trials' attributes in one transaction."""
    backends = {id(_rdb_backend(t)) for t in trials}
    return bool(trials) and _rdb_backend(trials[0]) is not None and len(backends) == 1


def set_user_attrs(items: Sequence[tuple[optuna.trial.BaseTrial, Mapping[str, Any]]]) -> None:
    """Set each trial's user attributes (one transaction on an RDB storage; see the module docstring).

    Raises what ``set_user_attr`` raises (``UpdateFinishedTrialError`` for a finished trial). Attributes of
    other trials of the call may then be written or not (Optuna's error path commits what came before):
    writing them again, one trial at a time, is what to do (each write is an upsert)."""
    trials = [t for t, _ in items]
    if not one_transaction(trials):
        for trial, attrs in items:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        return
    backend = _rdb_backend(trials[0])
    with _create_scoped_session(backend.scoped_session, True) as session:
        for trial, attrs in items:
            trial_id = trial._trial_id  # type: ignore[attr-defined]
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, _models.TrialUserAttributeModel, trial_id, key, value)
    for trial, attrs in items:  # what Trial.set_user_attr also does: its own copy stays current
        trial._cached_frozen_trial.user_attrs.update(attrs)  # type: ignore[attr-defined]
