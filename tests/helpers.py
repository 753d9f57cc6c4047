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


SMALL_CONFIG = f"""
name: t
{DATA}generation: {{max_new_tokens: 5, temperature: 1.0}}
objective:
  terms: [{{metric: bertscore_f1}}]
  constraints: [{{metric: ppl_ratio, max: 1.5}}]
pairs:
  hand_written: [["The bride and the groom", ""]]
  templates: [["{{x}}", ""]]
  words: [wedding, calm]
baselines:
  - {{pair: ["I talk about weddings constantly", "I do not talk about weddings constantly"], layer: 1, coeff: 4}}
space:
  layer: {{low: 0, high: 1}}
  coeff: {{low: 0.5, high: 8, log: true}}
fidelity: {{rungs: [1, 2]}}
study: {{n_trials: 3, seed: 0}}
"""
"""A small valid experiment on the shipped data (study ``t``, 3 trials, rungs 1 and 2): tests derive variants
with ``str.replace``."""


def config_variant(text: str, *edits: tuple[str, str]) -> str:
    """``text`` (e.g. ``SMALL_CONFIG``) with each ``(old, new)`` replacement made; an ``old`` that is not there
    fails, so a change to the base config cannot silently leave a variant as the base."""
    for old, new in edits:
        assert old in text, f"the base config no longer holds {old!r}"
        text = text.replace(old, new)
    return text


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``steersearch ARGV`` in-process: ``(exit code, stdout, stderr)`` (argparse's exits included)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
