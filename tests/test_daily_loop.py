"""A researcher's daily loop on the CLI: list runs, watch a study another process is writing, compare and
report from the run folder alone, reuse a trial's candidate in `generate`, `--version`, flags anywhere."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import search.cli.commands as commands
from objectives.testing import FakeBertScorer
from search.analysis.compare import Comparison
from search.config import load_config
from search.run import run_search
from search.session import Scorers, load_data, load_run_study, vector_cache
from search.space import Candidate
from steering import GenerationConfig, generate
from steering.model import SteerableModel
from tests.helpers import DATA, run_cli

ROOT = Path(__file__).parents[1]


def _config(folder: Path, model_dir: Path, name: str = "loop") -> Path:
    # batch 1: the live-status test holds trial 1 open once trial 0 has ended, one trial at a time
    text = f"""
name: {name}
model: {{source: {model_dir}}}
{DATA}generation: {{max_new_tokens: 5, temperature: 1.0, n: 2}}
objective: {{terms: [{{metric: bertscore_f1}}]}}
pairs: {{hand_written: [["The bride and the groom", ""]], templates: [["{{x}}", ""]], words: [wedding, calm]}}
space: {{layer: {{low: 0, high: 1}}, coeff: {{low: 0.5, high: 8, log: true}}}}
fidelity: {{rungs: [1]}}
study: {{n_trials: 4, seed: 0, pruner: none, heartbeat_interval: 1, grace_period: 2, batch: 1}}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run(tiny: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-trial run on the tiny model, its weights saved so the CLI loads the same model."""
    root = tmp_path_factory.mktemp("loop")
    tiny.hf.save_pretrained(root / "model")
    tiny.tokenizer.save_pretrained(root / "model")
    cfg = load_config(_config(root, root / "model"))
    run_search(cfg, out=root / "runs" / "loop", model=tiny, scorers=Scorers(bert=FakeBertScorer()), n_trials=3)
    return root / "runs" / "loop"


def test_version_and_global_flags_after_the_subcommand(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("steersearch ")
    assert run_cli(capsys, "status", str(run), "-v")[0] == 0  # -v after the subcommand
    assert run_cli(capsys, "-v", "status", str(run))[0] == 0


def test_runs_and_status_of_a_finished_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "runs", str(run.parent))
    best = json.loads((run / "best.json").read_text())
    row = next(line for line in out.splitlines() if line.startswith("| loop |"))
    assert code == 0 and "| 3 / 3 |" in row and f"{best['value']:.4f} (trial {best['number']})" in row
    code, out, _ = run_cli(capsys, "status", str(run))
    assert code == 0 and out.startswith("loop: 3 of 3 trials finished (3 complete)")
    assert f"best: trial {best['number']}, objective {best['value']:.4f}" in out and "bertscore_f1" in out
    assert run_cli(capsys, "status", str(run.parent))[0] == 2  # not a run folder: one line, exit 2


def test_status_of_a_study_another_process_is_writing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, Path(load_config(run / "config.yaml").model.source or ""), name="live")
    out = tmp_path / "runs" / "live"
    argv = [sys.executable, "-m", "tests.worker_main", str(cfg), str(out), "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEERSEARCH_TEST_HANG_AT": "2"}
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert worker.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the worker holds its second trial open until it is killed
            if select.select([worker.stdout], [], [], 1.0)[0] and "hanging" in worker.stdout.readline():
                break
        else:
            raise AssertionError("the worker never reached its second trial")
        code, text, _ = run_cli(capsys, "status", str(out))
        assert code == 0 and text.startswith("live: 1 of 4 trials finished (1 complete, 1 running)")
        assert f"running: trial 1 on {os.uname().nodename}:{worker.pid}" in text
        code, text, _ = run_cli(capsys, "runs", str(tmp_path / "runs"))
        assert code == 0 and "| live |" in text and "| 1 / 4 | 1 complete, 1 running |" in text
    finally:
        worker.kill()
        worker.wait()


def test_compare_takes_the_run_folder_or_the_config_alone(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = []

    def fake_compare(cfg, run_dir):  # type: ignore[no-untyped-def]
        seen.append((cfg, run_dir))
        return Comparison("heldout", (), 1, 0, 10, {}, {})

    monkeypatch.setattr(commands, "run_compare", fake_compare)
    monkeypatch.setattr(commands, "write_report", lambda *args: None)
    assert run_cli(capsys, "compare", str(run))[0] == 0
    assert seen[-1] == (load_config(run / "config.yaml"), run)  # the run's own config
    other = _config(tmp_path, Path("elsewhere"), name="loop")
    assert run_cli(capsys, "compare", str(other), "--run", str(run))[0] == 0
    assert seen[-1] == (load_config(other), run)  # another comparison set still possible
    code, _, err = run_cli(capsys, "compare", str(tmp_path))
    assert code == 2 and "neither a run folder" in err
    monkeypatch.chdir(run.parents[1])  # `compare CONFIG` alone: the folder `run CONFIG` writes, runs/NAME
    assert run_cli(capsys, "compare", str(other))[0] == 0
    assert seen[-1] == (load_config(other), Path("runs") / "loop")
    code, _, err = run_cli(capsys, "compare", str(_config(tmp_path, Path("elsewhere"), name="never-run")))
    assert code == 2 and "no run folder runs/never-run" in err and "steersearch run" in err


def test_generate_applies_a_runs_trial_as_found(
    tiny: SteerableModel, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(run / "config.yaml")
    trial = load_run_study(cfg, run).trials[2]
    code, out, _ = run_cli(capsys, "generate", "--vector", f"{run}:2", "--json", "--max-new-tokens", "7", "--n", "3")
    assert code == 0
    got = json.loads(out)
    steering = Candidate.from_record(trial.user_attrs["candidate"]).steering(
        tiny, vector_cache(cfg, load_data(cfg), run)
    )
    gen = GenerationConfig(**{**cfg.generation.__dict__, "max_new_tokens": 7, "n": 3})
    prompt = got["settings"]["prompt"]
    assert got["steered"] == generate(tiny, [prompt], steering, gen)[0]
    assert got["unsteered"] == generate(tiny, [prompt], [], gen)[0] != got["steered"]
    assert got["settings"]["trial"] == 2 and got["settings"]["max_new_tokens"] == 7
    code, out, _ = run_cli(capsys, "generate", "--vector", str(run), "--json")  # the best trial by default
    assert code == 0 and json.loads(out)["settings"]["trial"] == json.loads((run / "best.json").read_text())["number"]
    code, _, err = run_cli(capsys, "generate", "--vector", f"{run}:2", "--coeff", "3")
    assert code == 2 and "--coeff is not allowed" in err
