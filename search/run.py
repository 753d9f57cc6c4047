"""``steersearch run``: build everything once from the config, run (or resume) the study, write the run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from objectives import EmbeddingSimilarity, EvalData, Evaluator, Objective, load_gold_set, load_split
from objectives.gold import GoldSet, Split
from search.adversarial import Start, load_or_mutate
from search.config import BaselineSpec, ConfigError, ExperimentConfig
from search.objective import CompletionSink, SteeringObjective
from search.outputs import check_run_folder, recorded_storage, update_run_files, write_run_start
from search.report import write_report
from search.space import Candidate, Pair, pair_pool
from search.study import (
    Progress,
    StorageError,
    enqueue_adversarial,
    enqueue_baselines,
    make_pruner,
    make_sampler,
    n_finished,
    open_study,
    redact,
    storage_for,
)
from search.vectors import Fitter, VectorCache, gold_rows
from search.workers import run_until
from steering import load_model
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
    pool = [Pair(b.pair[0], b.pair[1], "hand-written") for b in cfg.baselines]
    labels = {p.label for p in pool}
    for p in [*pair_pool(cfg.pairs), *extra]:
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


def adversarial_winners(
    cfg: ExperimentConfig, data: ExperimentData, model: SteerableModel, out: Path
) -> list[BaselineSpec]:
    """Winners of GCG mutation from each baseline, at the setting they were found at (computed once per
    run folder; see ``search.adversarial``)."""
    if cfg.adversarial is None:
        return []
    starts = [Start(b.pair, b.layer, b.coeff, b.positions) for b in cfg.baselines]
    rows = gold_rows(data.prompts.search, data.gold.passages.search, max_rows=cfg.adversarial.rows)
    records = load_or_mutate(out / "adversarial.json", model, starts, rows, cfg.adversarial)
    return [
        BaselineSpec((r["best"][0], r["best"][1]), r["layer"], r["coeff"], positions=r["positions"])
        for r in records
        if r["best"] != r["start"]
    ]


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


def load_experiment_model(cfg: ExperimentConfig) -> SteerableModel:
    return load_model(cfg.model.source, device=cfg.model.device, dtype=getattr(torch, cfg.model.dtype))


def run_search(
    cfg: ExperimentConfig,
    *,
    out: Path,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    scorers: Scorers | None = None,
    model: SteerableModel | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> optuna.Study:
    """Run or resume the study until it has ``n_trials`` finished trials (or ``timeout`` seconds pass).

    Any number of processes may run this on one storage (see ``search.workers``). Every input is checked
    before the run folder is touched. The folder's ``trials.csv`` and ``best.json`` are rewritten from the
    storage after every finished trial, so a killed run can still be read. ``callbacks`` are Optuna
    callbacks called after each trial this worker finishes."""
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    url = storage or cfg.study.storage
    check_run_folder(out, cfg, url)
    data = load_data(cfg)
    full_pool(cfg)  # config errors before the model loads
    objective = Objective(cfg.objective)
    metrics = metrics_for(cfg, data)
    model = model or load_experiment_model(cfg)
    for b in cfg.baselines:
        model.check_layer(b.layer)
    if cfg.space.layer.high >= model.n_layers:
        raise ConfigError(
            f"space.layer.high {cfg.space.layer.high} is out of range: model has layers 0..{model.n_layers - 1}"
        )
    write_run_start(cfg, out, url)
    winners = adversarial_winners(cfg, data, model, out)
    pool = full_pool(cfg, [Pair(*w.pair, "adversarial") for w in winners])
    scorers = scorers or Scorers.build(cfg, metrics, data)
    evaluator = Evaluator(metrics, data.eval_data("search"), bertscorer=scorers.bert, embedder=scorers.embedder)
    vectors = vector_cache(cfg, data, out)

    def enqueue_once(study: optuna.Study) -> None:  # only the worker that creates the study
        enqueue_baselines(study, cfg.baselines, cfg.space)
        enqueue_adversarial(study, winners, cfg.space)

    study, worker = open_study(
        name=cfg.name,
        url=url,
        out_dir=out,
        spec=cfg.study,
        directions=objective.directions,
        make_sampler=lambda seed: make_sampler(cfg.study, cfg.space, pool, len(objective.directions), seed=seed),
        pruner=make_pruner(cfg.study, len(objective.directions)),
        setup=enqueue_once,
    )
    target = n_trials if n_trials is not None else cfg.study.n_trials
    done = n_finished(study)
    logger.info("study %s (worker %s): %d of %d trials finished", cfg.name, worker, done, target)
    fn = SteeringObjective(
        model=model,
        evaluator=evaluator,
        objective=objective,
        space=cfg.space,
        pool=pool,
        prompts=data.prompts.search,
        generation=cfg.generation,
        fidelity=cfg.fidelity,
        vectors=vectors,
        sink=CompletionSink(out / "completions"),
    )
    bar = Progress(target, done) if progress and done < target else None

    def refresh(study: optuna.Study, trial: FrozenTrial) -> None:  # the run folder follows the storage
        update_run_files(study, out)
        if bar:
            bar.update(study, trial, n_finished(study))

    try:
        run_until(
            study,
            fn,
            target=target,
            timeout=timeout if timeout is not None else cfg.study.timeout,
            callbacks=[refresh, *callbacks],
            stale_after=cfg.study.stale_after,
            max_retry=cfg.study.max_retry,
            poll=min(2.0, cfg.study.heartbeat_interval),
        )
    finally:
        if bar:
            bar.close()
        best = update_run_files(study, out)
        save_best_vectors(best, model, vectors, out / "vectors")
        write_report(out, study, [t.metric for t in cfg.objective.terms])
    return study


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


def save_best_vectors(best: dict[str, Any], model: SteerableModel, vectors: VectorCache, directory: Path) -> None:
    entries = best.get("pareto") or ([best] if best.get("candidate") else [])
    for entry in entries:
        cand = Candidate.from_record(entry["candidate"])
        for i, (choice, add) in enumerate(zip(cand.additions, cand.steering(model, vectors), strict=True)):
            meta = {
                **add.vector.metadata,
                "trial": entry["number"],
                "coeff": add.coeff,  # what is applied (1 for a learned vector)
                "frac": choice.frac,
                "mask": choice.mask,
                "positions": choice.positions,
            }
            vec = type(add.vector)(add.vector.activations, add.vector.layer, meta)
            vec.save(directory / f"trial_{entry['number']:05d}_add{i}")
