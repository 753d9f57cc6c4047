"""Opening and running a study: storage, sampler, pruner, baselines, resume, progress.

Storage: ``runs/<name>/study.db`` (SQLite) by default. ``journal:PATH`` selects Optuna's journal file
(best for several processes on one machine); any other URL (``postgresql://...``) goes to RDB storage.
Running the same command again loads the study and runs only the trials still missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from filelock import FileLock
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from search import params
from search.config import BaselineSpec, StudySpec, TuneSpec
from search.config.space import SpaceSpec
from search.outputs import redact
from search.space import Pair
from search.workers import CREATOR, retry_callback, tally, this_worker, worker_seed

logger = logging.getLogger(__name__)


class StorageError(ValueError):
    """A storage that cannot be opened (unreachable, missing driver, bad URL); the message is one line."""


def _rdb_url(url: str) -> str:
    # SQLAlchemy's bare postgresql:// means psycopg2; the project's driver is psycopg 3 (the `postgres` extra).
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url.removeprefix(bare)
    return url


LOCK_SUFFIX = ".create-lock"  # not ".lock": Optuna's journal backend locks PATH.lock itself


def _lock_path(url: str | None, out_dir: Path) -> Path | None:
    """A hidden file lock beside a local storage file, so workers never race on creating it."""
    if url is None:
        file = out_dir / "study.db"
    elif url.startswith("journal:"):
        file = Path(url.removeprefix("journal:"))
    elif url.startswith("sqlite:///"):
        file = Path(url.removeprefix("sqlite:///"))
    else:
        return None
    return file.with_name(f".{file.name}{LOCK_SUFFIX}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _write_ahead_log(engine: sqlalchemy.engine.Engine) -> None:
    """Every connection of ``engine`` (a SQLite file) in WAL mode with ``synchronous=NORMAL``.

    The default (a rollback journal, ``synchronous=FULL``) syncs the disk several times a commit: about 20 ms
    a commit here, against about 2 ms in WAL, and a trial makes several (parameters, state, heartbeats; README,
    "Trials in batches"). In WAL a process killed mid-trial loses no committed transaction; only a power cut or
    an OS crash may undo the last few. Readers no longer block the writer, which suits several workers on one
    machine. WAL needs shared memory between the processes, so a SQLite file on a network filesystem must not be
    shared by workers on several machines: use PostgreSQL for that (README, "Several workers")."""
    sqlalchemy.event.listen(engine, "connect", _sqlite_pragmas)
    engine.dispose()  # the connections Optuna opened to create its tables predate the listener


def storage_for(url: str | None, out_dir: Path, spec: StudySpec | None = None) -> optuna.storages.BaseStorage:
    """The storage a run uses: ``runs/<name>/study.db`` (SQLite) by default, ``journal:PATH``, or an RDB URL.

    RDB storages (SQLite included) get Optuna's heartbeat and stale-trial retry from ``spec``; a SQLite file is
    opened in WAL mode (``_write_ahead_log``: several processes on one machine, not several machines). Raises
    ``StorageError`` in one line when the storage cannot be opened."""
    spec = spec or StudySpec()
    try:
        if url is not None and url.startswith("journal:"):
            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if url is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{(out_dir / 'study.db').resolve()}"
        rdb = _rdb_url(url)
        # Several worker processes may share a SQLite file: wait for its lock instead of failing.
        engine = {"connect_args": {"timeout": 120}} if rdb.startswith("sqlite") else {"pool_pre_ping": True}
        for attempt in range(5):
            try:
                with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 but long-standing
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        rdb,
                        engine_kwargs=engine,
                        heartbeat_interval=spec.heartbeat_interval,
                        grace_period=spec.grace_period,
                        heartbeat_stale_trial_callback=retry_callback(spec.max_retry),
                    )
                if rdb.startswith("sqlite"):
                    _write_ahead_log(storage.engine)
                return storage
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
                # Workers that open a fresh PostgreSQL database at once race to create its schema (CREATE TYPE
                # studydirection: duplicate key); the loser retries and finds the schema made.
                if attempt == 4 or rdb.startswith("sqlite"):
                    raise
                logger.info("creating the storage's schema raced another worker (%s); retrying", type(err).__name__)
                time.sleep(0.3 * (attempt + 1))
        raise AssertionError("unreachable")
    except ImportError as err:
        raise StorageError(
            f"storage {redact(url)}: its database driver is not installed ({err}); "
            "for PostgreSQL: pip install 'steersearch[postgres]'"
        ) from err
    except Exception as err:  # SQLAlchemy's errors (unreachable server, bad URL) carry multi-line detail
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"storage {redact(url)} cannot be opened: {first}") from err


def grid_space(space: SpaceSpec, pool: Sequence[Pair]) -> dict[str, list[Any]]:
    """The GridSampler search space; every float dimension must list its ``values``."""
    if space.n_additions.high > 1 or space.kinds != ("pair",):
        raise ValueError("sampler 'grid' supports one pair addition per trial (n_additions 1, kinds [pair])")
    grid: dict[str, list[Any]] = {}
    if len(pool) > 1:
        grid[params.PAIR] = [p.label for p in pool]
    if space.layer.varies:
        grid[params.LAYER] = list(range(space.layer.low, space.layer.high + 1))
    for name, r in ((params.COEFF, space.coeff), (params.FRAC, space.frac)):
        if not r.varies:
            continue
        if not r.values:
            raise ValueError(f"sampler 'grid' needs space.{name}.values (a list), not a range")
        grid[name] = list(r.values)
    for name, options in ((params.MASK, space.masks), (params.POSITIONS, space.positions)):
        if len(options) > 1:
            grid[name] = list(options)
    return grid


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``after_trial``, which stops the study when the grid is done.
    Trials run by ask-and-tell (``search.workers``, every batch size), where ``study.stop()`` raises (it works
    only inside ``study.optimize``), so the last grid point's callbacks never ran; it also reads the
    ``grid_id`` of the trial told, which an enqueued trial lacks (KeyError when a batch tells an enqueued
    trial while one grid point is left, failing its batch-mates). The budget (``run_until``) ends the study."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        pass


def make_sampler(
    spec: StudySpec, space: SpaceSpec, pool: Sequence[Pair], n_objectives: int, *, seed: int | None = None
) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded with ``seed`` (default: the study seed; workers pass their own)."""
    seed = spec.seed if seed is None else seed
    if n_objectives > 1 and spec.sampler not in ("nsga2", "random", "grid", "tpe"):
        raise ValueError(f"sampler {spec.sampler!r} is single-objective; use nsga2, tpe, random or grid")
    match spec.sampler:
        case "tpe":
            with warnings.catch_warnings():  # multivariate/group are "experimental" but long-standing
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # constant_liar: running trials (other workers') count as bad, so they are not proposed again.
                return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
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
            return _GridSampler(grid_space(space, pool), seed=seed)
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
        (params.KIND, "pair" in space.kinds),
        (params.LAYER, space.layer.contains(b.layer)),
        (params.COEFF, space.coeff.contains(b.coeff)),
        (params.FRAC, space.frac.contains(b.frac)),
        (params.MASK, b.mask in space.masks),
        (params.POSITIONS, b.positions in space.positions),
    ]
    bad = [name for name, ok in checks if not ok]
    return f"its {', '.join(bad)} lies outside the search space" if bad else None


def baseline_params(b: BaselineSpec, space: SpaceSpec) -> dict[str, Any]:
    """The parameters that enqueue a hand-written intervention (only those the space varies)."""
    out: dict[str, Any] = {params.PAIR: Pair(*b.pair).label}
    if space.n_additions.varies:
        out[params.N_ADDITIONS] = 1
    if len(space.kinds) > 1:
        out[params.KIND] = "pair"
    if space.layer.varies:
        out[params.LAYER] = b.layer
    for name, r, v in ((params.COEFF, space.coeff, b.coeff), (params.FRAC, space.frac, b.frac)):
        if r.varies:
            out[name] = v
    if len(space.masks) > 1:
        out[params.MASK] = b.mask
    if len(space.positions) > 1:
        out[params.POSITIONS] = b.positions
    return out


def open_study(
    *,
    name: str,
    url: str | None,
    out_dir: Path,
    spec: StudySpec,
    directions: Sequence[str],
    make_sampler: Callable[[int], optuna.samplers.BaseSampler],
    pruner: optuna.pruners.BasePruner,
    setup: Callable[[optuna.Study], None] = lambda study: None,
    metric_names: Sequence[str] = (),
) -> tuple[optuna.Study, str]:
    """Create the study, or load it if it exists; returns it and this worker's identity.

    The worker that creates the study is ``workers.CREATOR`` (sampler seeded with the study seed), names its
    values ``metric_names`` (one per direction; shown by optuna-dashboard and Optuna's plots) and runs
    ``setup`` (enqueueing baselines) once; any other worker is ``host:pid`` with a seed of its own. Local
    storages are created under a file lock so that workers started in the same instant never race on
    creating the schema; remote ones retry a few times."""
    lock_path = _lock_path(url, out_dir)
    if lock_path is not None:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock: Any = FileLock(str(lock_path)) if lock_path is not None else contextlib.nullcontext()
    dirs = [optuna.study.StudyDirection[d.upper()] for d in directions]
    for attempt in range(5):
        try:
            with lock:
                storage = storage_for(url, out_dir, spec)
                try:
                    study = optuna.create_study(
                        study_name=name,
                        storage=storage,
                        directions=dirs,
                        sampler=make_sampler(spec.seed),
                        pruner=pruner,
                    )
                except optuna.exceptions.DuplicatedStudyError:
                    identity = this_worker()
                    study = optuna.load_study(
                        study_name=name,
                        storage=storage,
                        sampler=make_sampler(worker_seed(spec.seed, identity)),
                        pruner=pruner,
                    )
                    if list(study.directions) != dirs:
                        raise StorageError(
                            f"study {name!r} in storage {redact(url) or out_dir} has directions "
                            f"{[d.name.lower() for d in study.directions]}, the config {list(directions)}"
                        ) from None
                    return study, identity
                if metric_names:
                    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, but long-standing
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        study.set_metric_names(list(metric_names))
                setup(study)
                return study, CREATOR
        except StorageError:
            raise
        except Exception as err:  # two remote workers creating one schema at once: one of them retries
            if attempt == 4:
                raise StorageError(f"storage {redact(url)}: {str(err).strip().splitlines()[0]}") from err
            logger.info("opening the study failed (%s); retrying", type(err).__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


TUNE_ATTR = "tune"
"""User attribute of a tuning trial: the label of the hand-written pair it tunes."""


def tuning_grid(baselines: Sequence[BaselineSpec], tune: TuneSpec) -> list[tuple[BaselineSpec, bool]]:
    """Every setting a hand-written pair is tried at on the search split: the settings written in the config
    (flag True), then each baseline's pair at every ``tune.layers`` x ``tune.coeffs`` point (its own layer or
    coefficient where a list is empty). No setting twice."""
    grid: dict[tuple[Any, ...], tuple[BaselineSpec, bool]] = {}
    for b in baselines:
        grid.setdefault(_setting(b), (b, True))
    for b in baselines:
        for layer in tune.layers or (b.layer,):
            for coeff in tune.coeffs or (b.coeff,):
                tuned = dataclasses.replace(b, layer=layer, coeff=coeff)
                grid.setdefault(_setting(tuned), (tuned, False))
    return list(grid.values())


def _setting(b: BaselineSpec) -> tuple[Any, ...]:
    return (tuple(b.pair), b.layer, float(b.coeff), b.frac, b.mask, b.positions)


def enqueue_baselines(study: optuna.Study, baselines: Sequence[BaselineSpec], space: SpaceSpec, tune: TuneSpec) -> int:
    """Enqueue each hand-written intervention, and its tuning grid (``tuning_grid``), once per study (skipped
    on resume); one the space cannot express exactly stays a comparison row only (logged)."""
    n = 0
    for b, written in tuning_grid(baselines, tune):
        attrs = {TUNE_ATTR: Pair(*b.pair).label} | ({"baseline": True} if written else {})
        n += _enqueue(study, [b], space, attrs)
    return n


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


def tuned_trials(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The best complete tuning trial (finite value) of each hand-written pair, by its label: the pair's
    tuned setting on the search split. Single-objective studies; pairs with no complete tuning trial are
    absent."""
    if len(study.directions) > 1:
        return {}
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    by_pair: dict[str, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        label = t.user_attrs.get(TUNE_ATTR)
        if label is not None and t.value is not None and math.isfinite(t.value):
            by_pair.setdefault(str(label), []).append(t)
    return {label: pick(ts, key=lambda t: float(t.value)) for label, ts in by_pair.items()}  # type: ignore[arg-type]


def enqueue_adversarial(study: optuna.Study, winners: Sequence[BaselineSpec], space: SpaceSpec) -> int:
    """Enqueue each adversarial winner at the layer and coefficient it was found at."""
    return _enqueue(study, winners, space, {"adversarial": True})


def n_finished(study: optuna.Study) -> int:
    """Finished trials that count toward the target (retried stale trials and surplus ones do not)."""
    return tally(study).done


def best_finite_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the best finite value of a single-objective study (None if none, or multi)."""
    if len(study.directions) > 1:
        return None
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: float(t.value))  # type: ignore[arg-type]


class Progress:
    """A tqdm bar over the study's counted trials (all workers'): done, best so far, ETA. Set up by the CLI."""

    def __init__(self, total: int, done: int) -> None:
        self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial", dynamic_ncols=True)

    def update(self, study: optuna.Study, trial: FrozenTrial, done: int) -> None:
        self.bar.update(max(0, min(done, self.bar.total) - self.bar.n))
        best = best_finite_trial(study)
        if best is not None:
            self.bar.set_postfix(best=f"{best.value:.4f}", state=trial.state.name.lower())

    def close(self) -> None:
        self.bar.close()
