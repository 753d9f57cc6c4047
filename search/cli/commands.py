"""The commands behind ``steersearch``: each composes the Python API (run, compare, analyze, report,
generate, demo) and prints what a researcher reads."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import typing
from datetime import datetime
from pathlib import Path

import torch

from search.analysis.analyze import run_analysis
from search.analysis.compare import Comparison, run_compare
from search.analysis.evaluation import SHOWN_METRICS
from search.analysis.select import Selection
from search.cli.demo import DEMOS, run_demo
from search.cli.display import side_by_side, summary
from search.cli.errors import UserError
from search.config import ConfigError, ExperimentConfig, find_config, load_config
from search.outputs import RUN_RECORD
from search.preflight import preflight
from search.report import write_report
from search.report.tables import (
    comparison_table,
    distill_table,
    length_table,
    overshoot_correlations,
    overshoot_table,
    selection_table,
    verdict_text,
)
from search.run import run_search
from search.runinfo import describe_states, find_runs, is_run_folder, summarize
from search.session import load_data, load_run_study, vector_cache
from search.space import Candidate
from steering import Addition, MaskMode, Positions, Steering, SteeringVector, generate, load_model
from steering.export import ExportError, applied_vector, control_directions, model_hint, write_control_vector
from steering.model import SteerableModel

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
    if args.run is None and is_run_folder(Path(args.target)):  # `compare RUN`: the run folder knows its config
        run_dir = Path(args.target)
        cfg = load_config(run_dir / "config.yaml")
    elif args.run is None:  # `compare CONFIG`: the run folder `run CONFIG` writes by default
        try:
            cfg = load_config(find_config(args.target))
        except ConfigError as err:
            raise UserError(
                f"{args.target} is neither a run folder (config.yaml and run.json) nor a config: {err}"
            ) from err
        run_dir = Path("runs") / cfg.name
        if not is_run_folder(run_dir):
            raise UserError(f"no run folder {run_dir} for {args.target}: `steersearch run` it first, or give --run DIR")
    else:  # `compare CONFIG --run DIR`: another comparison set on the same run
        cfg, run_dir = load_config(find_config(args.target)), Path(args.run)
    comparison = run_compare(cfg, run_dir)
    write_report(run_dir, load_run_study(cfg, run_dir), [t.metric for t in cfg.objective.terms])
    selection = Selection.load(run_dir)
    if selection is not None and comparison.winner is not None:
        print("Selection on the validation split (objective on each split):\n")
        print(selection_table(selection))
        print(f"\n{selection.summary()}\n")
    print("Test split (held-out prompts, passages and seeds):\n")
    print(comparison_table(comparison))
    verdict = verdict_text(comparison)
    if verdict:
        print(f"\n{verdict}")
    print(f"\nwrote {run_dir / Comparison.FILE}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    folders = find_runs(root)
    if not folders:
        print(f"no run folders in {root}")
        return 0
    head = "| run | model | done / target | trials by state | best | started | last update | storage |"
    print(head + "\n" + "|---" * 8 + "|")
    for folder in folders:
        try:
            r = summarize(folder)
        except (ValueError, OSError) as err:  # one unreadable folder does not hide the others
            print(f"| {folder.name} | – | – | unreadable: {' '.join(str(err).split())} | – | – | – | – |")
            continue
        best = f"{r.best.value:.4f} (trial {r.best.number})" if r.best else "–"
        print(
            f"| {_run_name(folder, r.name)} | {r.model} | {r.done} / {r.target} | {describe_states(r.states)} | "
            f"{best} | {_when(r.started)} | {_when(r.updated)} | {r.storage} |"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not is_run_folder(run_dir):
        raise UserError(f"{args.run} is not a run folder (no config.yaml and run.json)")
    r = summarize(run_dir, storage=args.storage)
    print(f"{r.name}: {r.done} of {r.target} trials finished ({describe_states(r.states)}); storage {r.storage}")
    print(f"model {r.model}; started {_when(r.started)}, last update {_when(r.updated)}")
    for number, worker, seconds in r.running:
        print(f"  running: trial {number} on {worker} for {seconds:.0f} s")
    if r.best is None:
        print("best: no completed trial yet")
        return 0
    print(f"best: trial {r.best.number}, objective {r.best.value:.4f}: {r.best.label}")
    shown = [m for m in SHOWN_METRICS if m in r.best.metrics]
    print("  " + ", ".join(f"{m} {r.best.metrics[m]:.3f}" for m in shown))
    return 0


def _run_name(folder: Path, study: str) -> str:
    return folder.name if folder.name == study else f"{folder.name} ({study})"


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t is not None else "–"


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
    if results.overshoot is not None:
        r = results.overshoot
        print(f"## Overshoot: frac x coefficient ({r.split} split)\n\n" + overshoot_table(r) + "\n")
        print(overshoot_correlations(r) + "\n\n" + "\n".join(f"- {s}" for s in r.statements) + "\n")
        print(f"wrote {out / r.FILE} and {out / r.CSV}")
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(DEMOS[args.model], as_json=args.json)
    return 0


def _run_reference(spec: str) -> tuple[Path, int | None] | None:
    """``RUN`` or ``RUN:TRIAL`` when ``spec`` names a run folder (else None: a vector file)."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit() and is_run_folder(Path(head)):
        return Path(head), int(tail)
    return (Path(spec), None) if is_run_folder(Path(spec)) else None


def _trial_steering(
    run_dir: Path, number: int | None, model: SteerableModel, *, flag: str = "--vector"
) -> tuple[Steering, dict[str, object]]:
    """A run's trial (default: the best) as the steering it was scored with, and what to show about it; ``flag``
    names the argument that asked, in error messages."""
    cfg = load_config(run_dir / "config.yaml")
    if number is None:
        best = json.loads((run_dir / "best.json").read_text()) if (run_dir / "best.json").exists() else {}
        if best.get("number") is None:
            raise UserError(f"{flag} {run_dir}: no best trial yet (best.json); name one as {run_dir}:TRIAL")
        number = int(best["number"])
    trials = load_run_study(cfg, run_dir).get_trials(deepcopy=False)
    if not 0 <= number < len(trials) or "candidate" not in trials[number].user_attrs:
        raise UserError(f"{flag} {run_dir}:{number}: the run has no trial {number} with a candidate")
    cand = Candidate.from_record(trials[number].user_attrs["candidate"])
    for choice in cand.additions:
        model.check_layer(choice.layer)
    steering = cand.steering(model, vector_cache(cfg, load_data(cfg), run_dir))  # fitted vectors from the run
    return steering, {"run": str(run_dir), "trial": number, "candidate": cand.describe()}


def cmd_generate(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise UserError("--prompt is empty")
    ref = _run_reference(args.vector) if args.vector is not None else None
    if ref is not None and args.config is None:
        cfg = load_config(ref[0] / "config.yaml")  # the run's model and generation settings
    else:
        cfg = load_config(find_config(args.config, "--config")) if args.config else ExperimentConfig()
    saved: SteeringVector | None = None
    if ref is not None:
        given = [
            f for f, v in (("--layer", args.layer), ("--coeff", args.coeff), ("--frac", args.frac)) if v is not None
        ]
        if given or args.mask is not None or args.positions is not None:
            raise UserError(
                f"{(given or ['--mask/--positions'])[0]} is not allowed with a run's trial: it is applied as found"
            )
    elif args.vector is not None:  # its layer is its own; checked against the model once it is loaded
        if args.layer is not None:
            raise UserError("--layer is not allowed with --vector: the vector's own layer is used")
        saved = SteeringVector.load(args.vector)
    elif args.layer is None or args.coeff is None:
        raise UserError(f"{'--layer' if args.layer is None else '--coeff'} is required with --pair")
    overrides = {
        k: v
        for k, v in (
            ("n", args.n),
            ("seed", args.seed),
            ("max_new_tokens", args.max_new_tokens),
            ("temperature", args.temperature),
            ("top_p", args.top_p),
        )
        if v is not None
    }
    gen_cfg = dataclasses.replace(cfg.generation, **overrides)
    model = load_model(cfg.model.source, device=cfg.model.device, dtype=getattr(torch, cfg.model.dtype))
    if ref is not None:
        steering, shown = _trial_steering(ref[0], ref[1], model)
    else:
        coeff = args.coeff if args.coeff is not None else 1.0
        frac, mask = args.frac if args.frac is not None else 1.0, args.mask or "first"
        positions = Positions.parse(args.positions or "front")
        layer = saved.layer if saved is not None else typing.cast(int, args.layer)  # checked above
        what = f"--vector {args.vector}: layer" if saved is not None else "--layer"
        if not 0 <= layer < model.n_layers:
            raise UserError(f"{what} {layer} is out of range: {model.name} has layers 0..{model.n_layers - 1}")
        if saved is not None and saved.d_model != model.d_model:
            raise UserError(f"--vector {args.vector}: d_model {saved.d_model}, but {model.name} has {model.d_model}")
        vec = saved if saved is not None else SteeringVector.from_pair(model, args.pair[0], args.pair[1], layer)
        add = Addition(vec, coeff, positions, frac, MaskMode(mask))
        steering = [add]
        shown = {
            "pair": list(args.pair) if saved is None else _saved_pair(saved),
            **({"vector": args.vector} if saved is not None else {}),
            "layer": layer,
            "coeff": coeff,
            "frac": frac,
            "mask": mask,
            "positions": str(add.positions),
        }
    unsteered = generate(model, [args.prompt], [], gen_cfg)[0]
    steered = generate(model, [args.prompt], steering, gen_cfg)[0]
    settings = {"model": model.name, "prompt": args.prompt, **shown, **dataclasses.asdict(gen_cfg)}
    if args.json:
        print(json.dumps({"unsteered": unsteered, "steered": steered, "settings": settings}, indent=2))
    else:
        heading = (
            f"model {model.name}  run {shown['run']} trial {shown['trial']}: {shown['candidate']}  seed {gen_cfg.seed}"
            if ref is not None
            else summary(settings)
        )
        print(side_by_side(args.prompt, unsteered, steered, heading))
    return 0


def _saved_pair(vec: SteeringVector) -> list[str]:
    """The prompt pair a saved vector was built from (its metadata), or [] for a fitted one."""
    meta = vec.metadata
    pair = [meta.get("prompt_a"), meta.get("prompt_b")]
    return [str(p) for p in pair] if meta.get("kind") == "pair" and None not in pair else []


def cmd_export(args: argparse.Namespace) -> int:
    ref = _run_reference(args.run)
    if ref is None:
        raise UserError(f"{args.run} is not a run folder (no config.yaml and run.json)")
    run_dir, number = ref
    if args.trial is not None and number not in (None, args.trial):
        raise UserError(f"--trial {args.trial} and {args.run} name different trials")
    number = args.trial if args.trial is not None else number
    if args.out is not None:
        _check_writable(Path(args.out))  # before the model loads
    cfg = load_config(run_dir / "config.yaml")
    model = load_model(cfg.model.source, device=cfg.model.device, dtype=getattr(torch, cfg.model.dtype))
    steering, shown = _trial_steering(run_dir, number, model, flag="export")
    trial = typing.cast(int, shown["trial"])
    base = Path(args.out) if args.out else run_dir / "exports" / f"trial_{trial:05d}"
    provenance: dict[str, str | int] = {"run": str(run_dir), "trial": trial, "model": model.name}
    try:
        if args.format == "gguf":
            try:
                directions = control_directions(steering, model.n_layers)
            except ExportError as err:
                raise UserError(
                    f"export {run_dir} trial {trial}: {err}; --format safetensors keeps it as found"
                ) from None
            path = base if args.out else base.with_suffix(".gguf")
            meta = {f"steersearch.{k}": v for k, v in {**provenance, "steering": str(shown["candidate"])}.items()}
            write_control_vector(path, directions, hint=model_hint(model), metadata=meta)
            layers = ", ".join(f"layer {n + 1} -> direction.{n}" for n in directions)
            print(f"trial {trial} ({shown['candidate']}) -> {path}\n{layers}; use at scale 1: --control-vector {path}")
        else:
            paths = [base.parent / f"{base.stem}_add{i}" for i in range(len(steering))] if len(steering) > 1 else [base]
            for add, path in zip(steering, paths, strict=True):
                applied_vector(add, **provenance).save(path)
            written = ", ".join(str(p.with_suffix(".safetensors")) for p in paths)
            print(f"trial {trial} ({shown['candidate']}) -> {written} (+ .json)")
    except OSError as err:
        raise UserError(f"cannot write {base}: {err.strerror or err}") from None
    return 0


def _check_writable(path: Path) -> None:
    """One line, before any work, when ``path`` cannot be written: a folder, or under a file or a read-only one."""
    if path.is_dir():
        raise UserError(f"-o {path} is a folder; name a file")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"-o {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"-o {path}: {parent} is not writable")
