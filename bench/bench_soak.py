"""Soak: one long ``run_search`` on the embedded model, checking that nothing accumulates from trial to trial.

One study of ``--trials`` trials (TPE, no pruner, default SQLite storage in a temporary run folder), the
model loaded once and ``FakeBertScorer`` standing in for BERTScore, so the trial loop itself is what runs:
sampling, vector cache, steered generation, the perplexity-ratio constraint, the run files rewritten after
every trial. An Optuna callback records after every trial:

- hooks attached anywhere on the model above its unsteered baseline: every ``_forward_hooks``,
  ``_forward_pre_hooks``, ``_backward_hooks`` and ``_backward_pre_hooks`` entry over all torch modules of the
  bridge, its ``original_model`` and the pristine HF tree, TransformerLens hook points' own ``fwd_hooks`` /
  ``bwd_hooks`` lists, and torch's global module hooks (target: 0 after every trial);
- resident memory (``VmRSS``), glibc's malloc bytes in use and Python's allocated blocks, for the growth
  from trial 100 to the last (target: < 5%);
- open file descriptors (``/proc/self/fd``).

Writes ``bench/results/soak.json`` (or ``--json``), prints a Markdown table, and exits 1 when hooks were
left or RSS grew by 5% or more.

    python -m bench.bench_soak [--trials 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import pickle
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from objectives.testing import FakeBertScorer
from search.config import ExperimentConfig, from_dict
from search.run import run_search
from search.session import Scorers
from steering import load_model
from steering.model import SteerableModel

ROOT = Path(__file__).parents[1]
GOLD = ROOT / "configs" / "gold"
RESULTS = ROOT / "bench" / "results" / "soak.json"
FROM = 100  # RSS growth is measured from this trial (after warm-up) to the last
MAX_GROWTH = 0.05
MIB = 1024 * 1024


def soak_config(trials: int) -> ExperimentConfig:
    """A cheap but complete trial: 8 search prompts x 1 sample x 8 tokens, BERTScore F1 (fake scorer) under
    a perplexity-ratio constraint, pair vectors from a small pool at any of the 4 layers."""
    return from_dict(
        ExperimentConfig,
        {
            "name": "soak",
            "model": {"source": None},
            "data": {
                "gold": str(GOLD / "weddings.yaml"),
                "prompts": str(GOLD / "prompts.yaml"),
                "neutral": str(GOLD / "neutral.yaml"),
                "off_target": str(GOLD / "off_target.yaml"),
            },
            "generation": {"max_new_tokens": 8, "temperature": 1.0},
            "objective": {
                "terms": [{"metric": "bertscore_f1"}],
                "constraints": [{"metric": "ppl_ratio", "max": 1.5}],
            },
            "pairs": {
                "hand_written": [["The bride and the groom", ""]],
                "templates": [["{x}", ""], ["I talk about {x}", "I do not talk about {x}"]],
                "words": ["wedding", "calm", "love", "food"],
            },
            "baselines": [
                {
                    "pair": ["I talk about weddings constantly", "I do not talk about weddings constantly"],
                    "layer": 1,
                    "coeff": 4,
                }
            ],
            "space": {"layer": {"low": 0, "high": 3}, "coeff": {"low": 0.5, "high": 16, "log": True}},
            "fidelity": {"rungs": [1]},
            "study": {"n_trials": trials, "seed": 0, "sampler": "tpe", "pruner": "none"},
        },
    )


def hook_count(model: SteerableModel) -> Counter[str]:
    """Hooks attached to any module of the model (each module once), by kind, plus torch's global ones."""
    modules: dict[int, torch.nn.Module] = {}
    roots = [model.bridge, model.hf, getattr(model.bridge, "original_model", None)]
    for root in roots:
        if isinstance(root, torch.nn.Module):
            for m in root.modules():
                modules.setdefault(id(m), m)
    counts: Counter[str] = Counter()
    for m in modules.values():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            counts[attr] += len(getattr(m, attr, None) or ())
        for attr in ("fwd_hooks", "bwd_hooks"):  # TransformerLens HookPoint's own handle lists
            counts[f"hookpoint.{attr}"] += len(getattr(m, attr, None) or ())
    g = torch.nn.modules.module
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        counts[f"global{attr}"] += len(getattr(g, attr, None) or ())
    return counts


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_in_use_fn() -> Any:
    try:
        fn = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO = _malloc_in_use_fn()


def malloc_in_use() -> int | None:
    """Bytes glibc malloc has handed out and not had back (heap + mmapped chunks); None off glibc."""
    if _MALLINFO is None:
        return None
    info = _MALLINFO()
    return int(info.uordblks + info.hblkhd)


class Recorder:
    """The Optuna callback: one sample per finished trial."""

    def __init__(self, model: SteerableModel, baseline: Counter[str], t0: float) -> None:
        self.model, self.baseline, self.t0 = model, baseline, t0
        self.rows: list[dict[str, Any]] = []
        self.left: list[tuple[int, dict[str, int]]] = []  # (trial number, hooks above baseline by kind)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        counts = hook_count(self.model)
        above = {k: counts[k] - self.baseline[k] for k in counts if counts[k] != self.baseline[k]}
        extra = sum(above.values())
        if extra:
            self.left.append((trial.number, above))
        self.rows.append(
            {
                "trial": len(self.rows) + 1,
                "number": trial.number,
                "state": trial.state.name,
                "t": time.perf_counter() - self.t0,
                "hooks": extra,
                "rss": rss_bytes(),
                "malloc": malloc_in_use(),
                "py_blocks": sys.getallocatedblocks(),
                "fds": open_fds(),
            }
        )
        if len(self.rows) % 100 == 0:
            self.rows[-1]["gc_objects"] = len(gc.get_objects())


def mib(b: float | None) -> float | None:
    return None if b is None else round(b / MIB, 1)


def growth(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not a else round((b - a) / a, 4)


def summarise(rec: Recorder, study: optuna.Study, out: Path, wall: float, setup: dict[str, Any]) -> dict[str, Any]:
    rows = rec.rows
    n = len(rows)
    first = rows[min(FROM, n) - 1]
    last = rows[-1]
    trials = study.get_trials(deepcopy=False)
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    per_100 = []
    for i in range(99, n, 100):
        r, prev = rows[i], rows[i - 100] if i >= 100 else None
        window = r["t"] - (prev["t"] if prev else 0.0)
        per_100.append(
            {
                "trial": r["trial"],
                "elapsed_s": round(r["t"], 1),
                "trials_per_s_window": round(100 / window, 2),
                "rss_mib": mib(r["rss"]),
                "malloc_in_use_mib": mib(r["malloc"]),
                "py_blocks": r["py_blocks"],
                "gc_objects": r.get("gc_objects"),
                "fds": r["fds"],
                "max_hooks_left_window": max(x["hooks"] for x in rows[max(0, i - 99) : i + 1]),
            }
        )
    rss_growth = growth(first["rss"], last["rss"])
    return {
        "command": " ".join(["python -m bench.bench_soak", *sys.argv[1:]]),
        "model": setup["model"],
        "config": setup["config"],
        "threads": torch.get_num_threads(),
        "trials_run": n,
        "states": dict(Counter(r["state"] for r in rows)),
        "wall_s": round(wall, 1),
        "model_load_s": setup["model_load_s"],
        "trials_per_s": round(n / wall, 3),
        "seconds_per_trial_first_100": round(rows[min(99, n - 1)]["t"] / min(100, n), 3),
        "seconds_per_trial_last_100": round((last["t"] - rows[max(0, n - 101)]["t"]) / min(100, n - 1 or 1), 3),
        "hooks_baseline": sum(rec.baseline.values()),
        "max_hooks_left": max(r["hooks"] for r in rows),
        "trials_with_hooks_left": [{"number": k, "above": v} for k, v in rec.left[:20]],
        "from_trial": first["trial"],
        "last_trial": last["trial"],
        "rss_mib": {
            "before_run": mib(setup["rss_before"]),
            "from_trial": mib(first["rss"]),
            "last_trial": mib(last["rss"]),
            "max": mib(max(r["rss"] for r in rows)),
        },
        "rss_growth": rss_growth,
        "malloc_in_use_mib": {"from_trial": mib(first["malloc"]), "last_trial": mib(last["malloc"])},
        "malloc_growth_mib": None if first["malloc"] is None else mib(last["malloc"] - first["malloc"]),
        "py_blocks": {"from_trial": first["py_blocks"], "last_trial": last["py_blocks"]},
        "fds": {
            "before_run": setup["fds_before"],
            "from_trial": first["fds"],
            "last_trial": last["fds"],
            "max": max(r["fds"] for r in rows),
        },
        "study": {
            "trials_in_storage": len(trials),
            "pickled_trials_mib": mib(len(pickle.dumps(trials))),
            "run_files_bytes": files,
            "completion_files": len(list((out / "completions").glob("*.jsonl"))),
        },
        "per_100": per_100,
    }


def markdown(s: dict[str, Any]) -> str:
    a, b = s["from_trial"], s["last_trial"]
    rss, fds, mal = s["rss_mib"], s["fds"], s["malloc_in_use_mib"]
    lines = [
        f"{s['trials_run']} trials on {s['model']} in {s['wall_s']:.0f} s ({s['trials_per_s']:.2f} trials/s, "
        f"{s['threads']} thread), states {s['states']}\n",
        "| check | value | target |",
        "|---|---|---|",
        f"| max hooks left after a trial (above baseline {s['hooks_baseline']}) | {s['max_hooks_left']} | 0 |",
        f"| RSS at trial {a} -> {b} (MiB) | {rss['from_trial']} -> {rss['last_trial']} ({s['rss_growth']:+.2%}) "
        "| < +5% |",
        f"| malloc in use at trial {a} -> {b} (MiB) | {mal['from_trial']} -> {mal['last_trial']} | |",
        f"| open fds before run / trial {a} / trial {b} / max | {fds['before_run']} / {fds['from_trial']} / "
        f"{fds['last_trial']} / {fds['max']} | flat |",
        "",
        "| trials | elapsed s | trials/s (window) | RSS MiB | malloc MiB | py blocks | gc objects | fds | hooks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["per_100"]:
        lines.append(
            f"| {r['trial']} | {r['elapsed_s']} | {r['trials_per_s_window']} | {r['rss_mib']} | "
            f"{r['malloc_in_use_mib']} | {r['py_blocks']} | {r['gc_objects']} | {r['fds']} | "
            f"{r['max_hooks_left_window']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", help="run folder (must not hold another study); default: a temporary one")
    parser.add_argument("--json", default=str(RESULTS), help="where to write the figures")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING)

    t0 = time.perf_counter()
    model = load_model(None)
    model_load = time.perf_counter() - t0
    baseline = hook_count(model)
    assert sum(baseline.values()) == 0, f"the unsteered model already has hooks: {dict(baseline)}"
    cfg = soak_config(args.trials)

    with tempfile.TemporaryDirectory(prefix="steersearch-soak-") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "run"
        gc.collect()
        setup = {
            "model": model.name.rsplit("/", 1)[-1],
            "model_load_s": round(model_load, 1),
            "rss_before": rss_bytes(),
            "fds_before": open_fds(),
            "config": {
                "prompts": "configs/gold/prompts.yaml (search split)",
                "samples_per_prompt": cfg.fidelity.rungs[-1],
                "max_new_tokens": cfg.generation.max_new_tokens,
                "objective": "bertscore_f1 (FakeBertScorer) s.t. ppl_ratio <= 1.5",
                "sampler": cfg.study.sampler,
                "pruner": cfg.study.pruner,
                "storage": "sqlite (run folder study.db)",
            },
        }
        t_run = time.perf_counter()
        rec = Recorder(model, baseline, t_run)
        study = run_search(
            cfg,
            out=out,
            n_trials=args.trials,
            scorers=Scorers(bert=FakeBertScorer()),
            model=model,
            progress=False,
            callbacks=[rec],
        )
        wall = time.perf_counter() - t_run
        summary = summarise(rec, study, out, wall, setup)

    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown(summary))
    print(f"\nwritten {path}")
    failures = []
    if summary["max_hooks_left"]:
        failures.append(f"hooks left after {len(rec.left)} trial(s), up to {summary['max_hooks_left']}")
    if summary["trials_run"] >= FROM and summary["rss_growth"] >= MAX_GROWTH:
        failures.append(f"RSS grew {summary['rss_growth']:.1%} from trial {FROM} (limit {MAX_GROWTH:.0%})")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
