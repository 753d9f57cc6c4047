"""Trials per hour with trials in batches (``study.batch`` K = 1, 4, 8, 16) against two hand-written loops, and
where a trial's time goes. Ratios come from one run on the same model, candidates and machine.

Every loop evaluates the same N candidates (drawn once from the config's space with a seeded random
sampler) with the trial of ``bench.bench_trials``: the first 8 search prompts x 8 samples, 40 new tokens,
``bertscore_f1 - 0.2 rep_rate`` with a perplexity-ratio constraint, so every trial runs the full budget.

- steersearch: the real runner (``search.workers.run_until``) on a SQLite study in a run folder, every trial
  enqueued, completions written and ``trials.csv``/``best.json`` refreshed after each trial, as ``run`` does.
- competent: a loop a careful engineer would write by hand: per trial one batched HF ``generate`` of all its
  rows (left-padded prompts, ``num_return_sequences``, a ``forward_pre_hook`` adding the vector at each row's
  front positions), ``bert_score.BERTScorer`` built once and called per trial, the same perplexity ratio.
- naive: ``bench_trials``' loop: one HF ``generate`` per sample and ``bert_score.score()`` per trial (which
  loads its encoder each call); timed on the first ``--naive`` candidates only.

With ``--studies N``, also whole searches as shipped: ``run_search`` of the model's config (its objective,
rungs, TPE and median pruner) for N trials at each K and each ``--seeds`` seed, timing the trials (from the
first ask to the last tell; data, model and scorer loading and calibration excluded), with the share of
trials pruned and the best value each search found (batches change what the sampler and pruner see, so the
searches differ).

With ``--journal-ab``, instead: the steersearch loop at K=1 on SQLite opened as ``storage_for`` opens it (WAL,
``synchronous=NORMAL``) and in SQLite's default rollback-journal mode, interleaved for ``--repeats`` rounds, with
the cost of one commit (``set_user_attr``) in each.

    OMP_NUM_THREADS=1 python -m bench.bench_batch [--candidates 16] [--repeats 2] [--studies 32]
    OMP_NUM_THREADS=1 python -m bench.bench_batch --journal-ab --candidates 8 --repeats 4
    OMP_NUM_THREADS=1 python -m bench.bench_batch --model smollm2-135m --candidates 8 --ks 1 8
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch
from bert_score import BERTScorer

import search.objective as objective_module
import search.run as search_run
import search.study
from bench.bench_trials import CONFIG_FOR, TRIAL, front_hook, naive_trial, pair_delta
from objectives import Evaluator, Objective
from objectives.bertscore import DEFAULT_NUM_LAYERS, default_model_path
from objectives.damage import PerplexityRatio
from objectives.text import repetition_rate
from search.config import ExperimentConfig, load_config
from search.config.features import FidelitySpec
from search.objective import CompletionSink, SteeringObjective
from search.outputs import update_run_files
from search.session import Scorers, full_pool, load_data, load_experiment_model, metrics_for
from search.space import Candidate, suggest
from search.study import storage_for
from search.workers import run_until
from steering import Addition, SteeringVector
from steering.model import SteerableModel

ROOT = Path(__file__).parents[1]
PARTS = ("generation", "scoring (BERTScore, text)", "damage metrics", "I/O (completions, run folder)")


class Clock:
    """Seconds spent in named parts, by wrapping the functions that do each part."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, part: str) -> Callable[[], None]:
        real = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - t0

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, real)

    @contextmanager
    def timing(self, targets: Sequence[tuple[Any, str, str]]) -> Iterator[None]:
        undo = [self.wrap(owner, name, part) for owner, name, part in targets]
        try:
            yield
        finally:
            for u in reversed(undo):
                u()


def draw_candidates(cfg: ExperimentConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct parameter sets of the config's space (pair candidates), seeded."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pool = full_pool(cfg)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        trial = study.ask()
        suggest(trial, cfg.space, pool)
        study.tell(trial, 0.0)
        if trial.params not in out:
            out.append(trial.params)
    return out


def steersearch_trials(
    cfg: ExperimentConfig,
    model: SteerableModel,
    evaluator: Evaluator,
    prompts: Sequence[str],
    candidates: Sequence[dict[str, Any]],
    k: int,
    clock: Clock,
    open_storage: Callable[..., optuna.storages.BaseStorage] = storage_for,
) -> float:
    """Seconds for the runner to evaluate ``candidates`` K at a time (fresh SQLite study and run folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        storage = open_storage(None, out, cfg.study)
        study = optuna.create_study(
            study_name=f"bench-k{k}", storage=storage, direction="maximize", pruner=optuna.pruners.NopPruner()
        )
        for params in candidates:
            study.enqueue_trial(params)
        objective = SteeringObjective(
            model=model,
            evaluator=evaluator,
            objective=Objective(cfg.objective),
            space=cfg.space,
            pool=full_pool(cfg),
            prompts=prompts,
            generation=cfg.generation,
            fidelity=cfg.fidelity,
            sink=CompletionSink(out / "completions"),
        )

        def refresh(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            update_run_files(study, out)

        targets = [
            (objective_module, "generate_candidates", PARTS[0]),
            (evaluator, "text_items_many", PARTS[1]),
            (evaluator, "model_metrics", PARTS[2]),
            (evaluator, "completion_items_many", PARTS[2]),
            (objective.sink, "write", PARTS[3]),
        ]
        t0 = time.perf_counter()
        with clock.timing(targets):
            run_until(
                study, objective, target=len(candidates), batch=k, callbacks=[clock_wrapped(clock, refresh, PARTS[3])]
            )
        wall = time.perf_counter() - t0
        states = {t.state for t in study.trials}
        assert states == {optuna.trial.TrialState.COMPLETE}, [t.user_attrs.get("fail_reason") for t in study.trials]
        return wall


def rollback_journal(url: str | None, out: Path, spec: Any = None) -> optuna.storages.BaseStorage:
    """``storage_for`` as it was before WAL: SQLite's default rollback journal, ``synchronous=FULL``."""
    storage = storage_for(url, out, spec)
    engine = storage.engine  # type: ignore[attr-defined]
    sqlalchemy.event.remove(engine, "connect", search.study._sqlite_pragmas)
    engine.dispose()
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    return storage


def commit_ms(open_storage: Callable[..., optuna.storages.BaseStorage], n: int = 30) -> float:
    """Milliseconds a commit (one ``set_user_attr``) takes on a fresh SQLite study opened by ``open_storage``."""
    with tempfile.TemporaryDirectory() as tmp:
        trial = optuna.create_study(storage=open_storage(None, Path(tmp))).ask()
        t0 = time.perf_counter()
        for i in range(n):
            trial.set_user_attr(f"a{i}", i)
        return (time.perf_counter() - t0) / n * 1000


def journal_ab(
    cfg: ExperimentConfig,
    model: SteerableModel,
    evaluator: Evaluator,
    prompts: Sequence[str],
    params: Sequence[dict[str, Any]],
    rounds: int,
) -> None:
    """The K=1 steersearch loop on WAL (``storage_for``) vs the rollback journal, interleaved (see the docstring)."""
    runs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in range(rounds):
        order = [("rollback journal", rollback_journal), ("WAL", storage_for)]
        for name, opener in order if r % 2 == 0 else order[::-1]:
            ms = commit_ms(opener)
            clock = Clock()
            wall = steersearch_trials(cfg, model, evaluator, prompts, params, 1, clock, opener)
            rest = wall - sum(clock.spent[p] for p in PARTS)
            runs[name].append((wall / len(params), rest / len(params), ms))
            print(f"round {r}: {name} {wall / len(params):.3f} s/trial, commit {ms:.2f} ms", flush=True)
    print(f"\nSQLite journal, K=1, {len(params)} candidates, median of {rounds} interleaved rounds\n")
    print("| SQLite | commit (ms) | Optuna and the rest (s/trial) | seconds per trial |")
    print("|---|---|---|---|")
    for name, rows in runs.items():
        med = [statistics.median(r[i] for r in rows) for i in range(3)]
        print(f"| {name} | {med[2]:.2f} | {med[1]:.3f} | {med[0]:.3f} |")


def clock_wrapped(clock: Clock, fn: Callable[..., None], part: str) -> Callable[..., None]:
    def timed(*args: Any) -> None:
        t0 = time.perf_counter()
        fn(*args)
        clock.spent[part] += time.perf_counter() - t0

    return timed


def competent_trial(
    model: SteerableModel,
    cand: Candidate,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    scorer: BERTScorer,
    gold: list[str],
    ppl: PerplexityRatio,
) -> float:
    layer, delta = pair_delta(model, cand)
    ids, mask = model.left_padded(list(prompts))  # left-padded BOS + prompt
    starts = (mask.shape[1] - mask.sum(dim=1)).repeat_interleave(n)
    handle = model.blocks[layer].register_forward_pre_hook(front_hook(delta, starts), with_kwargs=True)
    try:
        with torch.no_grad():
            out = model.hf.generate(
                ids,
                attention_mask=mask,
                do_sample=True,
                top_p=0.3,
                num_return_sequences=n,
                max_new_tokens=max_new_tokens,
                pad_token_id=model.pad_token_id,
            )
    finally:
        handle.remove()
    texts = [str(t) for t in model.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]
    f1 = scorer.score([t if t.strip() else "." for t in texts], [gold] * len(texts))[2].mean()
    steering = [Addition(SteeringVector(delta, layer), 1.0)]
    raw = {"bertscore_f1": float(f1), "rep_rate": repetition_rate(texts)} | ppl.score(model, steering)
    return float(Objective(TRIAL).value(raw))  # type: ignore[arg-type]


def whole_searches(
    shipped: ExperimentConfig, model: SteerableModel, ks: Sequence[int], n_trials: int, seeds: Sequence[int]
) -> None:
    """``run_search`` as shipped at each K: trials per hour, share pruned, best value (see the docstring)."""
    data = load_data(shipped)
    scorers = Scorers.build(shipped, metrics_for(shipped, data), data)
    rows: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    real = search_run.run_until
    for seed in seeds:
        for k in ks:
            cfg = dataclasses.replace(shipped, study=dataclasses.replace(shipped.study, batch=k, seed=seed))
            spent: list[float] = []

            def timed(*args: Any, spent: list[float] = spent, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return real(*args, **kwargs)
                finally:
                    spent.append(time.perf_counter() - t0)

            search_run.run_until = timed  # type: ignore[assignment]
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    study = search_run.run_search(
                        cfg, out=Path(tmp), n_trials=n_trials, model=model, scorers=scorers, progress=False
                    )
            finally:
                search_run.run_until = real
            pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) / len(study.trials)
            rows[k].append((spent[0] / len(study.trials), pruned, float(study.best_value)))
            print(f"seed {seed}: K={k} {spent[0] / len(study.trials):.3f} s/trial, best {study.best_value:.4f}")
    print(
        f"\nwhole searches: config {shipped.name} as shipped ({shipped.study.sampler}, {shipped.study.pruner} pruner, "
        f"rungs {shipped.fidelity.prompts} prompts x {shipped.fidelity.rungs} samples), {n_trials} trials, "
        f"seeds {list(seeds)}\n"
    )
    print("| study.batch | seconds per trial (median) | trials per hour | ÷ K=1 | pruned | best value (mean) |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(r[0] for r in rows[ks[0]])
    for k in ks:
        sec = statistics.median(r[0] for r in rows[k])
        pruned = statistics.mean(r[1] for r in rows[k])
        best = statistics.mean(r[2] for r in rows[k])
        print(f"| {k} | {sec:.3f} | {3600 / sec:.0f} | {base / sec:.2f}× | {pruned:.0%} | {best:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(CONFIG_FOR), default="tiny")
    parser.add_argument("--candidates", type=int, default=16, help="candidates every loop evaluates")
    parser.add_argument("--naive", type=int, default=3, help="candidates the naive loop evaluates")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all loops (medians reported)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="generation rows per pass (default: config)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--studies", type=int, default=0, help="trials of each whole search (0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only-studies", action="store_true", help="skip the fixed-candidate table")
    parser.add_argument("--journal-ab", action="store_true", help="only SQLite WAL vs rollback journal at K=1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shipped = load_config(ROOT / "configs" / f"{CONFIG_FOR[args.model]}.yaml")
    generation = shipped.generation
    if args.batch_size is not None:
        generation = dataclasses.replace(generation, batch_size=args.batch_size)
    cfg = dataclasses.replace(shipped, objective=TRIAL, generation=generation, fidelity=FidelitySpec((args.samples,)))
    data = load_data(cfg)
    model = load_experiment_model(cfg)
    if args.only_studies:
        whole_searches(shipped, model, args.ks, args.studies, args.seeds)
        return
    prompts, gold = list(data.prompts.search[: args.prompts]), list(data.gold.passages.search)
    metrics = metrics_for(cfg, data)
    evaluator = Evaluator(metrics, data.eval_data("search"), bertscorer=Scorers.build(cfg, metrics, data).bert)
    params = draw_candidates(cfg, args.candidates, seed=0)
    cands = [suggest(optuna.trial.FixedTrial(p), cfg.space, full_pool(cfg)) for p in params]
    if args.journal_ab:
        steersearch_trials(cfg, model, evaluator, prompts, params[:2], 1, Clock())  # warm-up
        journal_ab(cfg, model, evaluator, prompts, params, args.repeats)
        return
    scorer = BERTScorer(model_type=default_model_path(), num_layers=DEFAULT_NUM_LAYERS)
    ppl = PerplexityRatio(data.neutral.search)
    tokens = cfg.generation.max_new_tokens

    per_trial: dict[str, list[float]] = defaultdict(list)
    split: dict[int, Clock] = {}
    steersearch_trials(cfg, model, evaluator, prompts, params[:2], 1, Clock())  # warm-up
    for r in range(args.repeats):
        for k in args.ks:
            clock = Clock()
            wall = steersearch_trials(cfg, model, evaluator, prompts, params, k, clock)
            per_trial[f"K={k}"].append(wall / len(params))
            if r == args.repeats - 1:
                clock.spent["total"] = wall
                split[k] = clock
            print(f"round {r}: K={k} {wall / len(params):.3f} s/trial", flush=True)
        t0 = time.perf_counter()
        for cand in cands:
            competent_trial(model, cand, prompts, args.samples, tokens, scorer, gold, ppl)
        per_trial["competent"].append((time.perf_counter() - t0) / len(cands))
        print(f"round {r}: competent {per_trial['competent'][-1]:.3f} s/trial", flush=True)
        t0 = time.perf_counter()
        for cand in cands[: args.naive]:
            naive_trial(model, cand, prompts, args.samples, tokens, gold, ppl)
        per_trial["naive"].append((time.perf_counter() - t0) / args.naive)
        print(f"round {r}: naive {per_trial['naive'][-1]:.3f} s/trial", flush=True)

    s = {name: statistics.median(v) for name, v in per_trial.items()}
    print(
        f"\nmodel {model.name} (config {shipped.name}), {len(prompts)} prompts x {args.samples} samples x {tokens} "
        f"tokens a trial, generation batch_size {cfg.generation.batch_size}, threads {args.threads}; "
        f"{len(params)} candidates (naive: {args.naive}), median of {args.repeats} rounds\n"
    )
    print("| trial loop | seconds per trial | trials per hour | ÷ naive | ÷ competent | ÷ K=1 |")
    print("|---|---|---|---|---|---|")
    rows = [("naive", "naive (generate per sample, bert_score.score per trial)")]
    rows += [("competent", "competent (batched HF generate + pre-hook, BERTScorer built once)")]
    rows += [(f"K={k}", f"steersearch, study.batch {k}") for k in args.ks]
    base = s.get(f"K={args.ks[0]}")
    for key, label in rows:
        v = s[key]
        ratio_k = f"{base / v:.2f}×" if base and key.startswith("K=") else ""
        print(f"| {label} | {v:.3f} | {3600 / v:.0f} | {s['naive'] / v:.1f}× | {s['competent'] / v:.2f}× | {ratio_k} |")
    print("\nwhere a trial's time goes (seconds per trial, last round):\n")
    ks = sorted(split)
    print("| part | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for part in PARTS:
        print(f"| {part} | " + " | ".join(f"{split[k].spent[part] / len(params):.3f}" for k in ks) + " |")
    rest = {k: split[k].spent["total"] - sum(split[k].spent[p] for p in PARTS) for k in ks}
    print(
        "| Optuna (ask, tell, sampler, storage writes) and the rest | "
        + " | ".join(f"{rest[k] / len(params):.3f}" for k in ks)
        + " |"
    )
    print("| total | " + " | ".join(f"{split[k].spent['total'] / len(params):.3f}" for k in ks) + " |")
    if args.studies:
        print()
        whole_searches(shipped, model, args.ks, args.studies, args.seeds)


if __name__ == "__main__":
    main()
