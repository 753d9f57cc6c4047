"""Optuna on a real PostgreSQL server: the throwaway one tests/with_postgres.sh starts (`make test` runs through it).

The server's URL comes from the `postgres_url` fixture (STEERSEARCH_TEST_POSTGRES); without it these tests skip,
or fail under CI=true.
"""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import optuna
import psycopg
import pytest

pytestmark = pytest.mark.postgres


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy reads a bare postgresql:// as psycopg2; the project's driver is psycopg 3."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://")


def with_password(url: str, password: str | None) -> str:
    """The URL with another password, or none at all."""
    parts = urlsplit(url)
    user = f"{parts.username}:{password}" if password is not None else parts.username
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


def test_rdb_storage_stores_three_complete_trials_from_two_threads(postgres_url: str) -> None:
    name = f"smoke-{uuid.uuid4().hex}"
    storage = optuna.storages.RDBStorage(sqlalchemy_url(postgres_url))
    threads: set[int] = set()

    def objective(trial: optuna.Trial) -> float:
        threads.add(threading.get_ident())
        time.sleep(0.2)  # the two workers overlap, so both threads take a trial
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    try:
        study = optuna.create_study(storage=storage, study_name=name)
        study.optimize(objective, n_trials=3, n_jobs=2)
        assert len(threads) == 2

        # Read back through a fresh connection: the trials are on the server, not in this storage's cache.
        again = optuna.storages.RDBStorage(sqlalchemy_url(postgres_url))
        try:
            trials = optuna.load_study(study_name=name, storage=again).get_trials(deepcopy=False)
        finally:
            again.engine.dispose()
        assert len(trials) == 3
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
        assert all(t.value == pytest.approx(t.params["x"] ** 2) for t in trials)
    finally:
        if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
            optuna.delete_study(study_name=name, storage=storage)
        storage.engine.dispose()
    assert name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}


def test_the_password_is_required(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing but the URL may supply a password.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/dev/null")

    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == ("steersearch",)

    assert urlsplit(postgres_url).password
    for url in (with_password(postgres_url, None), with_password(postgres_url, "not-the-password")):
        assert urlsplit(url).password != urlsplit(postgres_url).password
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(url, connect_timeout=10).close()
