"""``steersearch`` command line: a thin layer over the Python API.

User errors (bad flags, bad config, unknown model path, layer out of range) print one line naming the
problem and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

import torch

from search.config import ConfigError, ExperimentConfig, check_files, find_config, load_config
from search.display import side_by_side
from steering import Addition, MaskMode, Positions, SteeringVector, generate, load_model
from steering.model import ModelLoadError

DEFAULT_PROMPT = "I went up to my friend and said"
EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the command line; printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if not args.verbose else logging.INFO, format="%(message)s")
    _quiet_third_party(verbose=args.verbose)
    try:
        return int(args.func(args))
    except (UserError, ConfigError, ModelLoadError, ValueError, FileNotFoundError) as err:
        line = " ".join(str(err).split()) or type(err).__name__  # one line, whatever the message held
        print(f"steersearch: error: {line}", file=sys.stderr)
        return EXIT_USAGE


def _quiet_third_party(*, verbose: bool) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not verbose:
        hf_logging.set_verbosity_error()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar reports trials


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="steersearch", description="Automated search for steering vectors.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="print unsteered and steered completions side by side")
    gen.add_argument("--config", help="experiment YAML or shipped config name; default: embedded model")
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument("--pair", nargs=2, metavar=("A", "B"), help="prompt pair; B may be ''")
    what.add_argument(
        "--vector", help="a saved steering vector (PATH.safetensors + PATH.json, as runs/<name>/vectors/ hold)"
    )
    gen.add_argument("--layer", type=int, help="residual stream layer (input of block L); with --pair only")
    gen.add_argument("--coeff", type=float, help="coefficient on the vector (required with --pair; --vector: 1)")
    gen.add_argument("--frac", type=float, default=1.0, help="fraction of residual dimensions (default 1)")
    gen.add_argument("--mask", choices=[m.value for m in MaskMode], default="first", help="which dims frac keeps")
    gen.add_argument("--positions", default="front", help="front (ActAdd), all, or from:K")
    gen.add_argument("--n", type=int, help="completions of each kind (default: config's generation.n)")
    gen.add_argument("--seed", type=int, help="sampling seed (default: config's generation.seed)")
    gen.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"prompt to continue (default {DEFAULT_PROMPT!r})")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="run (or resume) the search a config describes")
    run.add_argument("config", help="experiment YAML, or a shipped config's name (quickstart, ...)")
    run.add_argument("--n-trials", type=int, help="finished trials the study should reach (default: config)")
    run.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    run.add_argument("--storage", help="Optuna storage URL, or journal:PATH (default: sqlite in the run folder)")
    run.add_argument("--out", help="run folder (default: runs/<name>)")
    run.add_argument("--workers", type=int, default=1, help="worker processes on the same storage (default 1)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (used by extra workers)")
    run.set_defaults(func=cmd_run)

    cmp = sub.add_parser("compare", help="held-out comparison of the best found with baselines (CIs)")
    cmp.add_argument("config", help="experiment YAML or shipped config name (the one the run used)")
    cmp.add_argument("--run", required=True, help="run folder (holds best.json)")
    cmp.set_defaults(func=cmd_compare)

    rep = sub.add_parser("report", help="rebuild report.md and report.html of a run from storage and files")
    rep.add_argument("run", help="run folder (holds config.yaml)")
    rep.add_argument("--storage", help="Optuna storage URL, if the run did not use the default")
    rep.set_defaults(func=cmd_report)

    ana = sub.add_parser("analyze", help="distillation into short pairs and length vs strength (held-out)")
    ana.add_argument("config", help="experiment YAML (or shipped config name) with a distill and/or length section")
    ana.add_argument("--out", help="run folder (default: runs/<name>)")
    ana.set_defaults(func=cmd_analyze)

    demo = sub.add_parser("demo", help="offline demonstration on the embedded model (what `make demo` runs)")
    demo.add_argument("--json", action="store_true", help="print the measured rates as JSON")
    demo.set_defaults(func=cmd_demo)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from search.run import run_search

    config = find_config(args.config)
    cfg = load_config(config)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be >= 1, got {args.n_trials}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    _check_files(cfg)
    _check_writable(out, "--out", folder=True)
    _check_storage(args.storage or cfg.study.storage, out, cfg)
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
    if failed:
        raise UserError(f"{len(failed)} of {args.workers - 1} extra workers exited with an error")
    states = [t.state.name for t in study.trials]
    summary = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    print(f"study {cfg.name}: {len(states)} trials ({summary}); report: {out / 'report.html'}")
    best = json.loads((out / "best.json").read_text())
    if best.get("value") is not None:
        print(f"best value {best['value']:.4f} (trial {best['number']}): {best['params']}")
    return 0


def _check_writable(path: Path, what: str, *, folder: bool) -> None:
    """Refuse, in one line, a folder (``folder``) or file that cannot be written, creating nothing: an
    existing one must be of the right kind and writable; otherwise a file must be creatable in its nearest
    existing ancestor (tried with an unnamed temporary file, since root passes every ``os.access`` check)."""
    if path.exists():
        if path.is_dir() != folder:
            raise UserError(f"{what} {path} is {'a file, not a folder' if folder else 'a folder, not a file'}")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise UserError(f"{what} {path} is not writable")
        return
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise UserError(f"{what} {path}: {parent} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise UserError(f"{what} {path}: cannot create files in {parent} ({err.strerror or err})") from err


def _check_files(cfg: ExperimentConfig) -> None:
    """Every file the config names exists, and the fit's suppress set parses (the run reads it only after
    it has started writing the run folder)."""
    from objectives import load_gold_set

    check_files(cfg)
    if cfg.space.learned.suppress:
        try:
            load_gold_set(cfg.space.learned.suppress)
        except (OSError, ValueError) as err:
            raise ConfigError(f"space.learned.suppress: {err}") from err


def _check_storage(url: str | None, out: Path, cfg: ExperimentConfig) -> None:
    """Open the run's storage before anything is written, so a bad URL, a missing driver or an unreachable
    server fails in one line (``StorageError``) with the run folder untouched. A local file (``journal:PATH``,
    ``sqlite:///PATH``) is only checked to be writable, not created."""
    from search.study import StorageError, storage_for

    if url is None:
        return  # study.db in the run folder
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            try:
                _check_writable(Path(url.removeprefix(prefix)), "storage file", folder=False)
            except UserError as err:
                raise StorageError(f"storage {url}: {err}") from err
            return
    storage_for(url, out, cfg.study)


def cmd_compare(args: argparse.Namespace) -> int:
    from search.compare import run_compare, table

    cfg = load_config(find_config(args.config))
    report = run_compare(cfg, Path(args.run))
    shown = [
        m
        for m in ("bertscore_f1", "embedding_sim", "keyword_rate", "ppl_ratio", "kl", "rep_rate")
        if any(m in r["metrics"] for r in report["methods"].values())
    ]
    print(table(report, shown))
    print(f"\nwrote {Path(args.run) / 'comparison.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from search.report import write_report
    from search.run import load_run_study

    run_dir = Path(args.run)
    cfg = load_config(run_dir / "config.yaml")
    path = write_report(run_dir, load_run_study(cfg, run_dir, args.storage), [t.metric for t in cfg.objective.terms])
    print(f"wrote {path} and {run_dir / 'report.md'}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from search.analyze import run_analysis
    from search.distill import distill_table
    from search.length import length_table

    cfg = load_config(find_config(args.config))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    results = run_analysis(cfg, out)
    if "distill" in results:
        print("## Distillation into short pairs (held-out)\n\n" + distill_table(results["distill"]) + "\n")
    if "length" in results:
        print("## Length vs strength (held-out)\n\n" + length_table(results["length"]) + "\n")
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from search.demo import run_demo

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


if __name__ == "__main__":
    raise SystemExit(main())
