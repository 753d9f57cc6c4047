"""Shared test helpers: the shipped data files as a config section, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main

ROOT = Path(__file__).parents[1]

DATA = f"""data:
  gold: {ROOT}/configs/gold/weddings.yaml
  prompts: {ROOT}/configs/gold/prompts.yaml
  neutral: {ROOT}/configs/gold/neutral.yaml
  off_target: {ROOT}/configs/gold/off_target.yaml
"""
"""A config's ``data:`` section naming the shipped gold, prompt, neutral and off-target files by absolute path."""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``steersearch ARGV`` in-process: ``(exit code, stdout, stderr)`` (argparse's exits included)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
