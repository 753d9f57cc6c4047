"""Running a search: build everything once from the config, run (or resume) the study, keep the run folder
up to date. The CLI's ``run`` command renders the report afterwards (``search.report``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from objectives import Objective
from search.adversarial import Start, load_or_mutate
from search.config import BaselineSpec, ConfigError, ExperimentConfig
from search.config.features import FidelitySpec
from search.objective import CompletionSink, SteeringObjective
from search.outputs import check_run_folder, update_run_files, write_run_start
from search.preflight import preflight
from search.session import (
    ExperimentData,
    Scorers,
    build_evaluator,
    calibrate,
    full_pool,
    load_data,
    load_experiment_model,
    metrics_for,
    vector_cache,
)
from search.space import Candidate, Pair
from search.study import (
    Progress,
    enqueue_adversarial,
    enqueue_baselines,
    make_pruner,
    make_sampler,
    n_finished,
    open_study,
    tuning_grid,
)
from search.vectors import VectorCache, gold_rows
from search.workers import run_until
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


def adversarial_winners(
    cfg: ExperimentConfig, data: ExperimentData, model: SteerableModel, out: Path
) -> list[BaselineSpec]:
    """Winners of GCG mutation from each baseline, at the setting they were found at (computed once per
    run folder; see ``search.adversarial``)."""
    if cfg.adversarial is None:
        return []
    starts = [Start(b.pair, b.layer, b.coeff, b.positions) for b in cfg.baselines]
    rows = gold_rows(data.prompts.search, data.gold.passages.search, max_rows=cfg.adversarial.rows)
    runs = load_or_mutate(out, model, starts, rows, cfg.adversarial)
    return [BaselineSpec(r.best, r.layer, r.coeff, positions=r.positions) for r in runs if r.improved]


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
    callbacks called after each trial this worker finishes. Trials run ``study.batch`` at a time, sharing
    their forward passes (``search.objective``)."""
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    url = storage or cfg.study.storage
    preflight(cfg, out, url)
    check_run_folder(out, cfg, url)
    data = load_data(cfg)
    full_pool(cfg)  # config errors before the model loads
    objective = Objective(cfg.objective)
    metrics = metrics_for(cfg, data)
    model = model or load_experiment_model(cfg)
    for b, _ in tuning_grid(cfg.baselines, cfg.tune):
        model.check_layer(b.layer)
    if cfg.space.layer.high >= model.n_layers:
        raise ConfigError(
            f"space.layer.high {cfg.space.layer.high} is out of range: model has layers 0..{model.n_layers - 1}"
        )
    budget = n_trials if n_trials is not None else cfg.study.n_trials
    grid = len(tuning_grid(cfg.baselines, cfg.tune))
    if grid > budget:
        raise ConfigError(
            f"the hand-written pairs' tuning grid has {grid} settings but the budget is {budget} trials: "
            "raise study.n_trials or shorten tune.layers/tune.coeffs"
        )
    write_run_start(cfg, out, url, n_trials)
    winners = adversarial_winners(cfg, data, model, out)
    pool = full_pool(cfg, [Pair(*w.pair, "adversarial") for w in winners])
    scorers = scorers or Scorers.build(cfg, metrics, data)
    evaluator = build_evaluator(cfg, data, "search", scorers, metrics)
    prompts = search_prompts(data.prompts.search, cfg.fidelity, cfg.generation.seed)
    full = dataclasses.replace(cfg.generation, n=cfg.fidelity.rungs[-1], first_sample=0)
    calibrate(evaluator, model, prompts, full)  # steer_score's anchors, if the objective uses it
    vectors = vector_cache(cfg, data, out)

    def enqueue_once(study: optuna.Study) -> None:  # only the worker that creates the study
        enqueue_baselines(study, cfg.baselines, cfg.space, cfg.tune)
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
        metric_names=SteeringObjective.metric_names(objective),
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
        prompts=prompts,
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
            batch=cfg.study.batch,
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
    return study


def search_prompts(prompts: Sequence[str], fidelity: FidelitySpec, seed: int) -> list[str]:
    """The search prompts a trial uses, in order: as written, or with prompt rungs (``fidelity.prompts``) the
    first ``fidelity.prompts[-1]`` of a permutation seeded by ``seed``, so that every rung's prefix is a random
    subset of the split rather than its first few styles."""
    if fidelity.prompts is None:
        return list(prompts)
    try:
        n = fidelity.budget(len(prompts))[-1][0]
    except ValueError as err:
        raise ConfigError(str(err)) from err
    order = np.random.default_rng(seed).permutation(len(prompts))
    return [prompts[i] for i in order[:n]]


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
