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


def test_the_project_opens_a_bare_postgresql_url_with_its_heartbeat(postgres_url: str, tmp_path) -> None:
    from search.study import storage_for

    storage = storage_for(postgres_url, tmp_path)  # postgresql:// is mapped onto psycopg 3
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() == 10
    assert not list(tmp_path.iterdir())  # a remote storage writes nothing locally


def test_a_password_never_reaches_the_run_folder_logs_or_report(
    postgres_url: str, tmp_path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    from pathlib import Path

    from objectives.testing import FakeBertScorer
    from search.cli import main
    from search.config import load_config
    from search.run import run_search
    from search.session import Scorers
    from steering.testing import tiny_model

    password = urlsplit(postgres_url).password
    assert password
    root = Path(__file__).parents[1]
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(
        f"name: pw-{uuid.uuid4().hex[:8]}\n"
        "generation: {max_new_tokens: 3}\n"
        "objective: {terms: [{metric: bertscore_f1}]}\n"
        'pairs: {hand_written: [["The bride", ""]]}\n'
        "space: {layer: {low: 0, high: 1}}\n"
        "fidelity: {rungs: [1]}\n"
        f"study: {{n_trials: 2, storage: '{postgres_url}'}}\n"
        f"data: {{gold: {root}/configs/gold/weddings.yaml, prompts: {root}/configs/gold/prompts.yaml}}\n"
    )
    out = tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        run_search(load_config(cfg_file), out=out, model=tiny_model(), scorers=Scorers(bert=FakeBertScorer()))
        assert main(["report", str(out), "--storage", postgres_url]) == 0
        # A wrong password: the one-line error names the storage without any password.
        assert main(["report", str(out), "--storage", with_password(postgres_url, "wrong-secret")]) == 2
    err = capsys.readouterr().err
    assert "cannot be opened" in err and "wrong-secret" not in err and password not in err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.yaml", "env.json", "run.json", "trials.csv", "best.json", "report.md"} <= {p.name for p in files}
    for p in files:
        assert password.encode() not in p.read_bytes(), p
    assert password not in caplog.text
    assert "steersearch@127.0.0.1" in (out / "run.json").read_text()  # the folder still says where the study is
