"""``steersearch analyze``: the distillation, length-vs-strength and overshoot analyses a config describes.

Writes ``distill.json``, ``length.json`` and/or ``overshoot.json`` (with ``overshoot.csv``) into the run folder
(``runs/<name>`` by default), with ``config.yaml`` and ``env.json``; the CLI then renders the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from objectives import Objective
from search.analysis.distill import DistillReport, run_distill
from search.analysis.evaluation import SplitEvaluator, build_heldout
from search.analysis.length import LengthReport, run_length
from search.analysis.overshoot import OvershootReport, run_overshoot
from search.config import ConfigError, ExperimentConfig
from search.outputs import check_run_folder, config_yaml, env_info, write_text
from search.session import Scorers, vector_cache
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analyses:
    distill: DistillReport | None = None
    length: LengthReport | None = None
    overshoot: OvershootReport | None = None


def run_analysis(
    cfg: ExperimentConfig, out: Path, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> Analyses:
    """Run the config's ``distill``, ``length`` and ``overshoot`` sections and save each into ``out``."""
    if cfg.distill is None and cfg.length is None and cfg.overshoot is None:
        raise ConfigError("analyze needs a distill or a length section in the config, or an overshoot section")
    if len(Objective(cfg.objective).directions) > 1:
        raise ConfigError("objective: analyze compares single objective values; use kind: scalar")
    heldout = build_heldout(cfg, model=model, scorers=scorers)
    for layer in [t.layer for t in cfg.distill.targets] if cfg.distill else []:
        heldout.model.check_layer(layer)
    if cfg.length is not None:
        heldout.model.check_layer(cfg.length.layer)
    for layer in cfg.overshoot.layers if cfg.overshoot else []:
        heldout.model.check_layer(layer)
    check_run_folder(out, cfg, None, check_storage=False)  # a search's folder may gain analyses, nothing else
    write_text(out / "config.yaml", config_yaml(cfg))
    write_text(out / "env.json", json.dumps(env_info(cfg), indent=2))
    distill = length = overshoot = None
    if cfg.distill is not None:
        distill = run_distill(cfg.distill, heldout, vector_cache(cfg, heldout.data, out))
        distill.save(out)
    if cfg.length is not None:
        length = run_length(cfg.length, heldout)
        length.save(out)
    if cfg.overshoot is not None:
        spec = cfg.overshoot
        grid = SplitEvaluator(
            cfg, heldout.data, heldout.model, heldout.scorers, spec.split, n=spec.samples, prompts=spec.prompts
        )
        overshoot = run_overshoot(spec, grid)
        overshoot.save(out)
    return Analyses(distill, length, overshoot)
