"""The commands behind ``steersearch``: each composes the Python API (run, compare, analyze, report,
generate, demo) and prints what a researcher reads."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import torch

from search.analysis.analyze import run_analysis
from search.analysis.compare import Comparison, run_compare
from search.cli.demo import run_demo
from search.cli.display import side_by_side
from search.cli.errors import UserError
from search.config import ExperimentConfig, find_config, load_config
from search.outputs import RUN_RECORD
from search.preflight import preflight
from search.report import write_report
from search.report.tables import comparison_table, distill_table, length_table
from search.run import run_search
from search.session import load_run_study
from steering import Addition, MaskMode, Positions, SteeringVector, generate, load_model

DEFAULT_PROMPT = "I went up to my friend and said"


def cmd_run(args: argparse.Namespace) -> int:
    config = find_config(args.config)
    cfg = load_config(config)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be >= 1, got {args.n_trials}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    preflight(cfg, out, args.storage or cfg.study.storage, what="--out")  # before extra workers start
    extra = []
    if args.workers > 1:
        argv = [sys.executable, "-m", "search.cli", "run", str(config), "--out", str(out), "--no-progress"]
        for flag, value in (("--n-trials", args.n_trials), ("--timeout", args.timeout), ("--storage", args.storage)):
            if value is not None:
                argv += [flag, str(value)]
        extra = [subprocess.Popen(argv) for _ in range(args.workers - 1)]
    try:
        study = run_search(
            cfg,
            out=out,
            n_trials=args.n_trials,
            timeout=args.timeout,
            storage=args.storage,
            progress=not args.no_progress,
        )
    finally:
        failed = [p.args for p in extra if p.wait() != 0]
    write_report(out, study, [t.metric for t in cfg.objective.terms])
    if failed:
        raise UserError(f"{len(failed)} of {args.workers - 1} extra workers exited with an error")
    states = [t.state.name for t in study.trials]
    summary = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    print(f"study {cfg.name}: {len(states)} trials ({summary}); report: {out / 'report.html'}")
    best = json.loads((out / "best.json").read_text())
    if best.get("value") is not None:
        print(f"best value {best['value']:.4f} (trial {best['number']}): {best['params']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    cfg = load_config(find_config(args.config))
    run_dir = Path(args.run)
    comparison = run_compare(cfg, run_dir)
    write_report(run_dir, load_run_study(cfg, run_dir), [t.metric for t in cfg.objective.terms])
    print(comparison_table(comparison))
    print(f"\nwrote {run_dir / Comparison.FILE}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    cfg = load_config(run_dir / "config.yaml")
    searched = (run_dir / RUN_RECORD).exists() or (run_dir / "study.db").exists() or args.storage
    study = load_run_study(cfg, run_dir, args.storage) if searched else None  # an analyze-only folder has none
    path = write_report(run_dir, study, [t.metric for t in cfg.objective.terms])
    print(f"wrote {path} and {run_dir / 'report.md'}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    cfg = load_config(find_config(args.config))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    results = run_analysis(cfg, out)
    study = load_run_study(cfg, out) if (out / RUN_RECORD).exists() else None  # a search ran here too
    write_report(out, study, [t.metric for t in cfg.objective.terms])
    if results.distill is not None:
        print("## Distillation into short pairs (held-out)\n\n" + distill_table(results.distill) + "\n")
    if results.length is not None:
        print("## Length vs strength (held-out)\n\n" + length_table(results.length) + "\n")
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(as_json=args.json)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    cfg = load_config(find_config(args.config, "--config")) if args.config else ExperimentConfig()
    if not args.prompt.strip():
        raise UserError("--prompt is empty")
    saved: SteeringVector | None = None
    if args.vector is not None:  # its layer is its own; checked against the model once it is loaded
        if args.layer is not None:
            raise UserError("--layer is not allowed with --vector: the vector's own layer is used")
        saved = SteeringVector.load(args.vector)
    elif args.layer is None or args.coeff is None:
        raise UserError(f"{'--layer' if args.layer is None else '--coeff'} is required with --pair")
    coeff = args.coeff if args.coeff is not None else 1.0
    positions = Positions.parse(args.positions)
    overrides = {k: v for k, v in (("n", args.n), ("seed", args.seed)) if v is not None}
    gen_cfg = dataclasses.replace(cfg.generation, **overrides)
    model = load_model(cfg.model.source, device=cfg.model.device, dtype=getattr(torch, cfg.model.dtype))
    layer = saved.layer if saved is not None else typing.cast(int, args.layer)  # checked above
    what = f"--vector {args.vector}: layer" if saved is not None else "--layer"
    if not 0 <= layer < model.n_layers:
        raise UserError(f"{what} {layer} is out of range: {model.name} has layers 0..{model.n_layers - 1}")
    if saved is not None and saved.d_model != model.d_model:
        raise UserError(f"--vector {args.vector}: d_model {saved.d_model}, but {model.name} has {model.d_model}")
    vec = saved if saved is not None else SteeringVector.from_pair(model, args.pair[0], args.pair[1], layer)
    add = Addition(vec, coeff, positions, args.frac, MaskMode(args.mask))
    unsteered = generate(model, [args.prompt], [], gen_cfg)[0]
    steered = generate(model, [args.prompt], [add], gen_cfg)[0]
    settings = {
        "model": model.name,
        "prompt": args.prompt,
        "pair": list(args.pair) if saved is None else _saved_pair(saved),
        **({"vector": args.vector} if saved is not None else {}),
        "layer": layer,
        "coeff": coeff,
        "frac": args.frac,
        "mask": args.mask,
        "positions": str(add.positions),
        **dataclasses.asdict(gen_cfg),
    }
    if args.json:
        print(json.dumps({"unsteered": unsteered, "steered": steered, "settings": settings}, indent=2))
    else:
        print(side_by_side(args.prompt, unsteered, steered, settings))
    return 0


def _saved_pair(vec: SteeringVector) -> list[str]:
    """The prompt pair a saved vector was built from (its metadata), or [] for a fitted one."""
    meta = vec.metadata
    pair = [meta.get("prompt_a"), meta.get("prompt_b")]
    return [str(p) for p in pair] if meta.get("kind") == "pair" and None not in pair else []
