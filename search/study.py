"""Opening and running a study: storage, sampler, pruner, baselines, resume, progress.

Storage: ``runs/<name>/study.db`` (SQLite) by default. ``journal:PATH`` selects Optuna's journal file
(best for several processes on one machine); any other URL (``postgresql://...``) goes to RDB storage.
Running the same command again loads the study and runs only the trials still missing.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from search.config import BaselineSpec, StudySpec
from search.space import Pair, SpaceSpec

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_for(url: str | None, out_dir: Path) -> str | optuna.storages.BaseStorage:
    if url is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Several worker processes may share the file: wait for SQLite's lock instead of failing.
        return optuna.storages.RDBStorage(
            f"sqlite:///{(out_dir / 'study.db').resolve()}", engine_kwargs={"connect_args": {"timeout": 120}}
        )
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return url


def grid_space(space: SpaceSpec, pool: Sequence[Pair]) -> dict[str, list[Any]]:
    """The GridSampler search space; every float dimension must list its ``values``."""
    if space.n_additions.high > 1 or space.kinds != ("pair",):
        raise ValueError("sampler 'grid' supports one pair addition per trial (n_additions 1, kinds [pair])")
    grid: dict[str, list[Any]] = {}
    if len(pool) > 1:
        grid["pair"] = [p.label for p in pool]
    if space.layer.varies:
        grid["layer"] = list(range(space.layer.low, space.layer.high + 1))
    for name, r in (("coeff", space.coeff), ("frac", space.frac)):
        if not r.varies:
            continue
        if not r.values:
            raise ValueError(f"sampler 'grid' needs space.{name}.values (a list), not a range")
        grid[name] = list(r.values)
    for name, options in (("mask", space.masks), ("positions", space.positions)):
        if len(options) > 1:
            grid[name] = list(options)
    return grid


def make_sampler(
    spec: StudySpec, space: SpaceSpec, pool: Sequence[Pair], n_objectives: int
) -> optuna.samplers.BaseSampler:
    seed = spec.seed
    if n_objectives > 1 and spec.sampler not in ("nsga2", "random", "grid", "tpe"):
        raise ValueError(f"sampler {spec.sampler!r} is single-objective; use nsga2, tpe, random or grid")
    match spec.sampler:
        case "tpe":
            with warnings.catch_warnings():  # multivariate/group are "experimental" but long-standing
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
        case "cmaes":
            # CMA-ES handles the continuous parameters; categorical ones fall back to independent sampling.
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        case "gp":
            return optuna.samplers.GPSampler(seed=seed)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "grid":
            return optuna.samplers.GridSampler(grid_space(space, pool), seed=seed)
    raise AssertionError(spec.sampler)


def make_pruner(spec: StudySpec, n_objectives: int) -> optuna.pruners.BasePruner:
    if n_objectives > 1 or spec.pruner == "none":
        return optuna.pruners.NopPruner()  # Trial.report/should_prune do not work multi-objective
    match spec.pruner:
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
        case "halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        case "hyperband":
            return optuna.pruners.HyperbandPruner()
    raise AssertionError(spec.pruner)


def outside_space(b: BaselineSpec, space: SpaceSpec) -> str | None:
    """Why the trial for ``b`` could not run ``b`` exactly (a dimension it sets outside what the space
    allows), or None. Such a baseline stays a comparison row but is not enqueued as a trial."""
    checks = [
        ("kind", "pair" in space.kinds),
        ("layer", space.layer.contains(b.layer)),
        ("coeff", space.coeff.contains(b.coeff)),
        ("frac", space.frac.contains(b.frac)),
        ("mask", b.mask in space.masks),
        ("positions", b.positions in space.positions),
    ]
    bad = [name for name, ok in checks if not ok]
    return f"its {', '.join(bad)} lies outside the search space" if bad else None


def baseline_params(b: BaselineSpec, space: SpaceSpec) -> dict[str, Any]:
    """The parameters that enqueue a hand-written intervention (only those the space varies)."""
    params: dict[str, Any] = {"pair": Pair(*b.pair).label}
    if space.n_additions.varies:
        params["n_additions"] = 1
    if len(space.kinds) > 1:
        params["kind"] = "pair"
    if space.layer.varies:
        params["layer"] = b.layer
    for name, r, v in (("coeff", space.coeff, b.coeff), ("frac", space.frac, b.frac)):
        if r.varies:
            params[name] = v
    if len(space.masks) > 1:
        params["mask"] = b.mask
    if len(space.positions) > 1:
        params["positions"] = b.positions
    return params


def open_study(
    *,
    name: str,
    storage: str | optuna.storages.BaseStorage,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=[optuna.study.StudyDirection[d.upper()] for d in directions],
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def enqueue_baselines(study: optuna.Study, baselines: Sequence[BaselineSpec], space: SpaceSpec) -> int:
    """Enqueue each hand-written intervention once per study (skipped on resume); one the space cannot
    express exactly stays a comparison row only (logged)."""
    return _enqueue(study, baselines, space, {"baseline": True})


def _enqueue(study: optuna.Study, specs: Sequence[BaselineSpec], space: SpaceSpec, attrs: dict[str, Any]) -> int:
    n = 0
    for b in specs:
        reason = outside_space(b, space)
        if reason:
            logger.warning("not enqueued as a trial: %r / %r (%s)", b.pair[0], b.pair[1], reason)
            continue
        study.enqueue_trial(baseline_params(b, space), user_attrs=attrs, skip_if_exists=True)
        n += 1
    return n


def enqueue_adversarial(study: optuna.Study, winners: Sequence[BaselineSpec], space: SpaceSpec) -> int:
    """Enqueue each adversarial winner at the layer and coefficient it was found at."""
    return _enqueue(study, winners, space, {"adversarial": True})


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Progress:
    """A tqdm bar over the study's trials: done, best so far, ETA. Set up by the CLI, not at import."""

    def __init__(self, total: int, done: int) -> None:
        self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial", dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.bar.update(1)
        if len(study.directions) == 1:
            done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
            if done:
                best = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
                value = best(t.value for t in done if t.value is not None and math.isfinite(t.value))
                self.bar.set_postfix(best=f"{value:.4f}", state=trial.state.name.lower())

    def close(self) -> None:
        self.bar.close()
