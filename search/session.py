"""Loading what every command shares, once per process: the experiment's data, the model, the heavy scorers,
the candidate pool, the vector cache, and the study of an existing run folder.

Commands (run, compare, analyze, report) and analyses build on these instead of each loading their own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from objectives import EmbeddingSimilarity, EvalData, Evaluator, Objective, load_gold_set, load_split
from objectives.gold import GoldSet, Split
from search.config import ConfigError, ExperimentConfig
from search.outputs import recorded_storage
from search.space import Pair, pair_pool
from search.study import StorageError, redact, storage_for
from search.vectors import Fitter, VectorCache, gold_rows
from steering import GenerationConfig, generate, load_model
from steering.model import SteerableModel

logger = logging.getLogger(__name__)

ALWAYS = {"bertscore_p", "bertscore_r", "bertscore_f1", "distinct_1", "distinct_2", "rep_rate"}
"""Cheap metrics every trial reports, whatever the objective uses, so reports can show them."""


@dataclass(frozen=True)
class ExperimentData:
    gold: GoldSet
    prompts: Split
    neutral: Split
    off_target: Split

    def eval_data(self, split: str) -> EvalData:
        return EvalData(
            gold=self.gold.passages.part(split),
            keywords=self.gold.keywords,
            neutral_texts=self.neutral.part(split),
            off_target_prompts=self.off_target.part(split),
            prompts=self.prompts.part(split),
        )


def load_data(cfg: ExperimentConfig) -> ExperimentData:
    def read(field: str, loader: Any) -> Any:
        path = getattr(cfg.data, field)
        try:
            return loader(path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.{field}: {err}") from err

    return ExperimentData(
        read("gold", load_gold_set),
        read("prompts", load_split),
        read("neutral", load_split),
        read("off_target", load_split),
    )


def metrics_for(cfg: ExperimentConfig, data: ExperimentData) -> set[str]:
    metrics = Objective(cfg.objective).metrics | ALWAYS
    if data.gold.keywords:
        metrics |= {"keyword_rate", "keyword_count"}
    return metrics


def full_pool(cfg: ExperimentConfig, extra: Sequence[Pair] = ()) -> list[Pair]:
    """Baseline pairs, then the config's pairs, then ``extra`` (adversarial winners); no duplicates."""
    if cfg.pairs is None:
        raise ConfigError("pairs: required for `run` (hand_written pairs, or templates with words)")
    baselines = [Pair(b.pair[0], b.pair[1], "hand-written") for b in cfg.baselines]
    pool: list[Pair] = []
    labels: set[str] = set()
    for p in [*baselines, *pair_pool(cfg.pairs), *extra]:  # a pair two baselines share is in the pool once
        if p.label not in labels:
            labels.add(p.label)
            pool.append(p)
    return pool


def vector_cache(cfg: ExperimentConfig, data: ExperimentData, run_dir: Path) -> VectorCache:
    """Pair vectors, and fitted vectors (trained on the search split) saved under ``run_dir/vectors/fitted``."""
    suppress: tuple[tuple[str, str], ...] = ()
    if cfg.space.learned.suppress:
        try:
            negatives = load_gold_set(cfg.space.learned.suppress).passages.search
        except (OSError, ValueError) as err:
            raise ConfigError(f"space.learned.suppress: {err}") from err
        suppress = gold_rows(data.prompts.search, negatives)
    fitter = Fitter(gold_rows(data.prompts.search, data.gold.passages.search), suppress, cfg.space.learned)
    return VectorCache(fitter, run_dir / "vectors" / "fitted")


@dataclass
class Scorers:
    """Heavy scorers, built once per process."""

    bert: Any = None
    embedder: EmbeddingSimilarity | None = None

    @classmethod
    def build(cls, cfg: ExperimentConfig, metrics: set[str], data: ExperimentData) -> Scorers:
        bert = (
            cfg.scorer.build(idf_sents=data.gold.passages.search)
            if metrics & {"bertscore_f1", "bertscore_p", "bertscore_r"}
            else None
        )
        embedder = EmbeddingSimilarity(device=cfg.scorer.device) if "embedding_sim" in metrics else None
        return cls(bert, embedder)


def build_evaluator(
    cfg: ExperimentConfig, data: ExperimentData, split: str, scorers: Scorers, metrics: set[str]
) -> Evaluator:
    """The objectives layer's evaluator of ``metrics`` on one split of the data."""
    return Evaluator(
        metrics, data.eval_data(split), bertscorer=scorers.bert, embedder=scorers.embedder, steer=cfg.objective.steer
    )


def calibrate(
    evaluator: Evaluator, model: SteerableModel, prompts: Sequence[str], generation: GenerationConfig
) -> None:
    """Measure the evaluator's split calibration (``steer_score``'s anchors) from unsteered completions of
    ``prompts`` under ``generation``, if a derived metric needs it."""
    if not evaluator.needs_calibration or evaluator.calibration is not None:
        return
    rows = generate(model, list(prompts), [], generation)
    texts = [t for row in rows for t in row]
    cal = evaluator.calibrate(model, [p for p, row in zip(prompts, rows, strict=True) for _ in row], texts)
    logger.info("calibrated steer_score on %d unsteered completions: %s", len(texts), cal)


def load_experiment_model(cfg: ExperimentConfig) -> SteerableModel:
    """The config's model with its model-level settings (BOS, padding filler, prompt format)."""
    spec = cfg.model
    return load_model(
        spec.source,
        device=spec.device,
        dtype=getattr(torch, spec.dtype),
        bos_token=spec.bos_token,
        prepend_bos=spec.prepend_bos,
        pad_token=spec.pad_token,
        prompt_format=spec.prompt_format,
    )


def load_run_study(cfg: ExperimentConfig, run_dir: Path, storage: str | None = None) -> optuna.Study:
    """The study of an existing run, found through what the run folder records (``run.json``), on any
    storage; ``storage`` overrides it (e.g. a URL with the password the folder does not keep)."""
    url = storage or recorded_storage(run_dir) or cfg.study.storage
    if url is None and not (run_dir / "study.db").exists():
        raise FileNotFoundError(f"{run_dir}/study.db does not exist: is {str(run_dir)!r} a run folder?")
    try:
        return optuna.load_study(study_name=cfg.name, storage=storage_for(url, run_dir, cfg.study))
    except KeyError as err:  # Optuna's "study not found"
        raise StorageError(f"storage {redact(url) or run_dir / 'study.db'} has no study {cfg.name!r}") from err
