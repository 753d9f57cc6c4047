"""``steersearch analyze``: the distillation and length-vs-strength analyses a config describes.

Writes ``distill.json`` and/or ``length.json`` into the run folder (``runs/<name>`` by default), with
``config.yaml`` and ``env.json``, then ``report.md``/``report.html`` with the tables and the plot (plus the
study's sections when the folder also holds a search run).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from objectives import Objective
from search.compare import build_heldout
from search.config import ConfigError, ExperimentConfig
from search.distill import run_distill
from search.length import run_length
from search.outputs import RUN_RECORD, config_yaml, env_info, write_text
from search.report import write_report
from search.run import Scorers, load_run_study, vector_cache
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


def run_analysis(
    cfg: ExperimentConfig, out: Path, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> dict[str, Any]:
    """Run the config's ``distill`` and ``length`` sections; returns ``{"distill": ..., "length": ...}``."""
    if cfg.distill is None and cfg.length is None:
        raise ConfigError("analyze needs a distill or a length section in the config")
    if len(Objective(cfg.objective).directions) > 1:
        raise ConfigError("objective: analyze compares single objective values; use kind: scalar")
    heldout = build_heldout(cfg, model=model, scorers=scorers)
    for layer in [t.layer for t in cfg.distill.targets] if cfg.distill else []:
        heldout.model.check_layer(layer)
    if cfg.length is not None:
        heldout.model.check_layer(cfg.length.layer)
    write_text(out / "config.yaml", config_yaml(cfg))
    write_text(out / "env.json", json.dumps(env_info(cfg), indent=2))
    results: dict[str, Any] = {}
    if cfg.distill is not None:
        results["distill"] = run_distill(cfg.distill, heldout, vector_cache(cfg, heldout.data, out))
        write_text(out / "distill.json", json.dumps(results["distill"], indent=2))
    if cfg.length is not None:
        results["length"] = run_length(cfg.length, heldout)
        write_text(out / "length.json", json.dumps(results["length"], indent=2))
    study = load_run_study(cfg, out) if (out / RUN_RECORD).exists() else None  # a search ran here
    write_report(out, study, [t.metric for t in cfg.objective.terms])
    return results
