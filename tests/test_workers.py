"""Several worker processes on one study: distinct proposals, an exact budget, and dead workers' trials retried.

Each worker is a real process (``tests/worker_main.py``: the tiny in-memory model and the fake scorer), so
pids, file locks and heartbeats are the real ones. The same tests run on SQLite, journal and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.cli import main
from search.study import storage_for
from search.workers import retried_by, tally, worker_seed
from tests.helpers import DATA

ROOT = Path(__file__).parents[1]

CONFIG = f"""
name: {{name}}
{DATA}generation: {{{{max_new_tokens: 4, temperature: 1.0}}}}
objective:
  terms: [{{{{metric: bertscore_f1}}}}]
pairs:
  hand_written: [["The bride and the groom", ""]]
  templates: [["{{{{x}}}}", ""], ["I talk about {{{{x}}}}", ""]]
  words: [wedding, calm, bride, love]
baselines:
  - {{{{pair: ["I talk about weddings constantly", "I do not talk about weddings constantly"], layer: 1, coeff: 4}}}}
space:
  layer: {{{{low: 0, high: 1}}}}
  coeff: {{{{low: 0.5, high: 8, log: true}}}}
fidelity: {{{{rungs: [1]}}}}
study: {{{{n_trials: 4, seed: 0, pruner: none, heartbeat_interval: 1, grace_period: 2, batch: {{batch}}}}}}
"""

STORAGES = [
    "sqlite",
    "journal",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def _setup(tmp_path: Path, kind: str, request: pytest.FixtureRequest, batch: int = 1) -> tuple[Path, Path, str | None]:
    name = f"w{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG.format(name=name, batch=batch))
    url = {
        "sqlite": None,
        "journal": f"journal:{tmp_path / 'journal.log'}",
        "postgres": request.getfixturevalue("postgres_url") if kind == "postgres" else None,
    }[kind]
    return cfg, tmp_path / "run", url


@pytest.fixture
def spawn():  # type: ignore[no-untyped-def]
    """Start worker processes; any still alive when the test ends (it failed) are killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(cfg: Path, out: Path, n: int, url: str | None, **env: str) -> subprocess.Popen[str]:
        procs.append(_worker(cfg, out, n, url, **env))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _worker(cfg: Path, out: Path, n: int, url: str | None, **env: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.worker_main", str(cfg), str(out), str(n), *([url] if url else [])]
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _study(out: Path, url: str | None) -> optuna.Study:
    name = json.loads((out / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=storage_for(url, out))


def _wait_for_line(proc: subprocess.Popen[str], text: str, seconds: float = 120) -> None:
    assert proc.stdout is not None
    deadline, seen = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            if text in line:
                return
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"worker never printed {text!r}; output:\n{''.join(seen)}")


def test_worker_seeds() -> None:
    assert worker_seed(7, "0") == 7  # the creator keeps the study seed: a fresh single run is reproducible
    seeds = {worker_seed(7, f"host:{pid}") for pid in range(100)}
    assert len(seeds) == 100 and 7 not in seeds


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3], ids=["one-by-one", "batches-of-3"])
@pytest.mark.parametrize("kind", STORAGES)
def test_four_workers_started_together_explore_and_stop_at_the_target(
    tmp_path: Path, kind: str, batch: int, request: pytest.FixtureRequest, spawn
) -> None:
    cfg, out, url = _setup(tmp_path, kind, request, batch)
    together = {"STEERSEARCH_TEST_TOGETHER": f"{tmp_path / 'started'}:4", "STEERSEARCH_TEST_TRIAL_S": "0.5"}
    workers = [spawn(cfg, out, 12, url, **together) for _ in range(4)]  # same instant, fresh folder and storage
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, "\n".join(outputs)
    study = _study(out, url)
    assert tally(study).done == 12 and tally(study).running == 0  # exactly the target, none lost
    counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert all(t.state == TrialState.COMPLETE for t in counted), [t.user_attrs.get("fail_reason") for t in counted]
    assert sum(bool(t.user_attrs.get("baseline")) for t in study.trials) == 1  # enqueued once
    points = [tuple(sorted(t.params.items())) for t in counted if not t.user_attrs.get("baseline")]
    assert len(points) == len(set(points)) == 11  # no worker repeated another's proposal
    assert len({t.user_attrs["worker"] for t in counted}) >= 2  # the work was shared
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + len(study.trials)  # the run folder follows the storage


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "hang_at"), [(1, 2), (2, 4)], ids=["one-by-one", "batches-of-2"])
@pytest.mark.parametrize("kind", STORAGES)
def test_a_killed_workers_trial_is_retried_by_another(
    tmp_path: Path, kind: str, batch: int, hang_at: int, request: pytest.FixtureRequest, spawn
) -> None:
    """The worker hangs in its second trial (one by one) or in the second trial of its second batch of 2, so
    one batch of trials is RUNNING when it is killed; another worker retries each with its parameters."""
    cfg, out, url = _setup(tmp_path, kind, request, batch)
    doomed = spawn(cfg, out, 4, url, STEERSEARCH_TEST_HANG_AT=str(hang_at))
    _wait_for_line(doomed, "hanging in trial")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # The night's work is readable in the morning: the folder was updated after each finished trial.
    best = json.loads((out / "best.json").read_text())
    assert best["number"] < batch and len((out / "trials.csv").read_text().splitlines()) == 1 + batch
    assert main(["report", str(out), *(["--storage", url] if url else [])]) == 0
    hung = [t for t in _study(out, url).trials if t.state == TrialState.RUNNING]
    assert len(hung) == batch

    rescuer = spawn(cfg, out, 4, url)
    output = rescuer.communicate(timeout=300)[0]
    assert rescuer.returncode == 0, output
    study = _study(out, url)
    for h in hung:
        killed = study.trials[h.number]
        retry = study.trials[retried_by(study.trials)[killed.number]]
        assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
        assert retry.params == killed.params and retry.params  # retried with the same parameters
    assert tally(study).done == 4 and not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert "stale" in (out / "trials.csv").read_text()
