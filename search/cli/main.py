"""``steersearch`` command line: argument parsing and the one place logging is configured; the commands
live in ``search.cli.commands``.

User errors (bad flags, bad config, unknown model path, layer out of range) print one line naming the
problem and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import typing
from collections.abc import Sequence
from importlib import metadata

import optuna
from transformers.utils import logging as hf_logging

from search.cli import commands
from search.cli.demo import DEMOS
from search.cli.errors import EXIT_USAGE, UserError
from search.config import ConfigError
from steering import MaskMode
from steering.model import ModelLoadError


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


def _version() -> str:
    try:
        return metadata.version("steersearch")
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def _quiet_third_party(*, verbose: bool) -> None:

    hf_logging.disable_progress_bar()
    if not verbose:
        hf_logging.set_verbosity_error()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar reports trials


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="steersearch", description="Automated search for steering vectors.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--version", action="version", version=f"steersearch {_version()}")
    # Global flags are accepted after the subcommand too; SUPPRESS keeps a subcommand from resetting them.
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = functools.partial(sub.add_parser, parents=[common])

    gen = add("generate", help="print unsteered and steered completions side by side")
    gen.add_argument("--config", help="experiment YAML or shipped config name; default: embedded model")
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument("--pair", nargs=2, metavar=("A", "B"), help="prompt pair; B may be ''")
    what.add_argument(
        "--vector",
        help="a saved steering vector (PATH.safetensors + .json, as runs/<name>/vectors/ hold), or a run's trial "
        "as found: RUN (its best) or RUN:TRIAL",
    )
    gen.add_argument("--layer", type=int, help="residual stream layer (input of block L); with --pair only")
    gen.add_argument("--coeff", type=float, help="coefficient on the vector (required with --pair; --vector: 1)")
    gen.add_argument("--frac", type=float, help="fraction of residual dimensions (default 1)")
    gen.add_argument("--mask", choices=[m.value for m in MaskMode], help="which dims frac keeps (default first)")
    gen.add_argument("--positions", help="front (ActAdd, default), all, or from:K")
    gen.add_argument("--n", type=int, help="completions of each kind (default: config's generation.n)")
    gen.add_argument("--seed", type=int, help="sampling seed (default: config's generation.seed)")
    gen.add_argument("--max-new-tokens", type=int, help="tokens per completion (default: config's)")
    gen.add_argument("--temperature", type=float, help="sampling temperature; 0 is greedy (default: config's)")
    gen.add_argument("--top-p", type=float, help="nucleus sampling mass (default: config's)")
    gen.add_argument(
        "--prompt", default=commands.DEFAULT_PROMPT, help=f"prompt to continue (default {commands.DEFAULT_PROMPT!r})"
    )
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    gen.set_defaults(func=commands.cmd_generate)

    run = add("run", help="run (or resume) the search a config describes")
    run.add_argument("config", help="experiment YAML, or a shipped config's name (quickstart, ...)")
    run.add_argument("--n-trials", type=int, help="finished trials the study should reach (default: config)")
    run.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    run.add_argument("--storage", help="Optuna storage URL, or journal:PATH (default: sqlite in the run folder)")
    run.add_argument("--out", help="run folder (default: runs/<name>)")
    run.add_argument("--workers", type=int, default=1, help="worker processes on the same storage (default 1)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (used by extra workers)")
    run.set_defaults(func=commands.cmd_run)

    cmp = add("compare", help="held-out comparison of the best found with baselines (CIs)")
    cmp.add_argument(
        "target",
        metavar="RUN|CONFIG",
        help="a run folder (uses its config.yaml), or a config (its run folder: runs/NAME, as `run` writes, or --run)",
    )
    cmp.add_argument("--run", help="the run folder, when the first argument is another config to compare with")
    cmp.set_defaults(func=commands.cmd_compare)

    rep = add("report", help="rebuild report.md and report.html of a run from storage and files")
    rep.add_argument("run", help="run folder (holds config.yaml)")
    rep.add_argument("--storage", help="Optuna storage URL, if the run did not use the default")
    rep.set_defaults(func=commands.cmd_report)

    ana = add("analyze", help="distillation into short pairs, length vs strength, the frac x coeff overshoot grid")
    ana.add_argument(
        "config", help="experiment YAML (or shipped config name) with a distill, length and/or overshoot section"
    )
    ana.add_argument("--out", help="run folder (default: runs/<name>)")
    ana.set_defaults(func=commands.cmd_analyze)

    runs = add("runs", help="list run folders: progress, best value, started, last update, storage")
    runs.add_argument("dir", nargs="?", default="runs", help="a folder of run folders, or one run (default runs/)")
    runs.set_defaults(func=commands.cmd_runs)

    status = add("status", help="live progress of a run's study (works while workers are running)")
    status.add_argument("run", help="run folder")
    status.add_argument("--storage", help="storage URL with a password the run folder does not keep")
    status.set_defaults(func=commands.cmd_status)

    exp = add("export", help="write a run's trial (default: its best) as a llama.cpp control vector or vector files")
    exp.add_argument("run", metavar="RUN", help="run folder, or RUN:TRIAL")
    exp.add_argument("--trial", type=int, help="trial number (default: the best, best.json)")
    exp.add_argument(
        "--format", required=True, choices=["gguf", "safetensors"], help="gguf: llama.cpp control vector (README)"
    )
    exp.add_argument("-o", "--out", help="output file (default: RUN/exports/trial_NNNNN.gguf or .safetensors)")
    exp.set_defaults(func=commands.cmd_export)

    demo = add("demo", help="offline demonstration: steered vs unsteered on the same prompts and seeds")
    demo.add_argument("--json", action="store_true", help="print the measured rates as JSON")
    demo.add_argument("--model", choices=sorted(DEMOS), default="tiny", help="tiny (embedded, fast) or a real model")
    demo.set_defaults(func=commands.cmd_demo)
    return parser
