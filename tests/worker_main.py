"""One search worker as its own process, on the tiny in-memory model with the fake scorer (for worker tests).

Usage: python -m tests.worker_main CONFIG OUT N_TRIALS [STORAGE]
With STEERSEARCH_TEST_HANG_AT=K the worker hangs inside its K-th trial (1-based) until it is killed.
With STEERSEARCH_TEST_TOGETHER=DIR:N the worker waits until N workers have started (after their imports) so
they begin at the same instant, and each trial takes at least STEERSEARCH_TEST_TRIAL_S seconds, so that
every worker gets trials to run whatever the machine's load.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from objectives.testing import FakeBertScorer
from search.config import load_config
from search.objective import SteeringObjective
from search.run import run_search
from search.session import Scorers
from steering.testing import tiny_model


def _hang_at(k: int) -> None:
    begin, started = SteeringObjective.begin, []

    def hanging(self, trial):  # type: ignore[no-untyped-def]
        begun = begin(self, trial)  # the trial has its parameters: a retry must reuse them
        started.append(trial.number)
        if len(started) == k:
            print(f"hanging in trial {trial.number}", flush=True)
            time.sleep(3600)
        return begun

    SteeringObjective.begin = hanging  # type: ignore[method-assign]


def _slow_trials(seconds: float) -> None:
    begin = SteeringObjective.begin

    def slow(self, trial):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return begin(self, trial)

    SteeringObjective.begin = slow  # type: ignore[method-assign]


def _start_together(spec: str) -> None:
    folder, n = Path(spec.rsplit(":", 1)[0]), int(spec.rsplit(":", 1)[1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 300
    while len(list(folder.iterdir())) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(folder.iterdir()))} of {n} workers started")
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    config, out, n = argv[0], Path(argv[1]), int(argv[2])
    storage = argv[3] if len(argv) > 3 else None
    if "STEERSEARCH_TEST_HANG_AT" in os.environ:
        _hang_at(int(os.environ["STEERSEARCH_TEST_HANG_AT"]))
    if "STEERSEARCH_TEST_TRIAL_S" in os.environ:
        _slow_trials(float(os.environ["STEERSEARCH_TEST_TRIAL_S"]))
    model = tiny_model()
    if "STEERSEARCH_TEST_TOGETHER" in os.environ:
        _start_together(os.environ["STEERSEARCH_TEST_TOGETHER"])
    run_search(
        load_config(config),
        out=out,
        n_trials=n,
        storage=storage,
        model=model,
        scorers=Scorers(bert=FakeBertScorer()),
        progress=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
