"""What multi-fidelity saves: rungs over prompts against rungs over samples and the full budget, at equal
validation-best.

Every point of a small grid (the config's hand-written pairs x every layer x 6 coefficients) is measured once,
for real, on the search split at the full budget (32 prompts x 2 samples) and on the validation split; the
objective of any rung (a subset of the search completions) is the same items' statistic on that subset, so a
rung's value is exactly what a live trial would report there. Studies with Optuna's TPE sampler and the
project's median pruner then run against that table for many seeds, under three budgets:

- ``full``: every trial spends 32 prompts x 2 samples (no pruning);
- ``samples 1 -> 2``: rungs of 1 then 2 samples on all 32 prompts (the old scheme);
- ``prompts K -> ... -> 32``: rungs over the first K prompts of a seeded permutation, 2 samples each
  (``fidelity.prompts``),

each with Optuna's median pruner (the project's default) and successive halving. The measured grid is cached
in ``bench/results/`` so other budgets replay without measuring again.

Reported per budget: completions generated per study (compute), the search-split best, and the validation
value of the trial each study would select (its best complete trial), mean over seeds.

    python -m bench.bench_fidelity [--config configs/quickstart.yaml] [--seeds 20] [--trials 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import optuna

from search.analysis.evaluation import Measured, Method, SplitEvaluator
from search.config import StudySpec, load_config
from search.config.features import FidelitySpec
from search.run import search_prompts
from search.session import Scorers, load_data, load_experiment_model, metrics_for
from search.space import Pair
from search.study import make_pruner
from steering import Addition, SteeringVector

ROOT = Path(__file__).parents[1]
COEFFS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SAMPLES = 2
PROMPT_COUNTS = (4, 8, 12, 16)
BUDGETS: dict[str, list[tuple[int, int]]] = {  # (prompts, samples per prompt) at each rung
    "full": [(32, 2)],
    "samples 1 -> 2": [(32, 1), (32, 2)],
    "prompts 8 -> 32": [(8, 2), (32, 2)],
    "prompts 4 -> 32": [(4, 2), (32, 2)],
    "prompts 4 -> 12 -> 32": [(4, 2), (12, 2), (32, 2)],
}
PRUNERS = ("median", "halving")


def _subset(m: Measured, keep: list[int]) -> dict[str, float]:
    """Every metric of ``m`` on the completions ``keep`` (other items, e.g. neutral texts, all of them)."""
    n_completions = len(m.texts)
    draw = {it.n: np.arange(it.n) for it in m.items.values() if it.resample}
    draw[n_completions] = np.array(keep)
    return m.point(draw)


def measure_grid(cfg_path: str) -> tuple[dict[tuple[str, int, float], dict[str, float]], float]:
    cfg = load_config(cfg_path)
    cfg = dataclasses.replace(cfg, compare=dataclasses.replace(cfg.compare, n=SAMPLES))
    data = load_data(cfg)
    model = load_experiment_model(cfg)
    scorers = Scorers.build(cfg, metrics_for(cfg, data), data)
    search = SplitEvaluator(cfg, data, model, scorers, "search")
    validation = search.on("validation")
    prompts = list(data.prompts.search)
    order = search_prompts(prompts, FidelitySpec(rungs=(2, 2), prompts=(8, 32)), cfg.generation.seed)
    first = [prompts.index(p) for p in order]
    table: dict[tuple[str, int, float], dict[str, float]] = {}
    t0 = time.perf_counter()
    for b in cfg.baselines:
        pair = Pair(*b.pair)
        for layer in range(model.n_layers):
            vec = SteeringVector.from_pair(model, pair.a, pair.b, layer)
            for coeff in COEFFS:
                method = Method(f"{pair.label} L{layer} c{coeff}", [Addition(vec, coeff)])
                m = search.measure(method)
                rows = {
                    "32x2": _subset(m, list(range(len(m.texts)))),
                    "32x1": _subset(m, [p * SAMPLES for p in range(len(prompts))]),
                }
                for k in PROMPT_COUNTS:
                    rows[f"{k}x2"] = _subset(m, [p * SAMPLES + s for p in first[:k] for s in range(SAMPLES)])
                values = {k: search.objective_of(v) for k, v in rows.items()}
                values["validation"] = validation.objective_of(validation.measure(method).point())
                table[(pair.label, layer, coeff)] = {k: float(v) for k, v in values.items() if v is not None}
    return table, time.perf_counter() - t0


def simulate(
    table: dict[tuple[str, int, float], dict[str, float]], budget: str, pruner: str, trials: int, seed: int
) -> dict[str, float]:
    rungs = BUDGETS[budget]
    keys = sorted(table)
    pairs = sorted({k[0] for k in keys})
    layers = sorted({k[1] for k in keys})
    spent = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        key = (
            trial.suggest_categorical("pair", pairs),
            trial.suggest_categorical("layer", layers),
            trial.suggest_categorical("coeff", list(COEFFS)),
        )
        row = table[key]
        done = 0
        for i, (p, n) in enumerate(rungs):
            spent += p * n - done  # later rungs extend earlier ones
            done = p * n
            if i < len(rungs) - 1:
                trial.report(row[f"{p}x{n}"], step=done)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return row["32x2"]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=make_pruner(StudySpec(pruner=pruner), 1),  # type: ignore[arg-type]
    )
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    key = (best.params["pair"], best.params["layer"], best.params["coeff"])
    return {"spent": spent, "search": table[key]["32x2"], "validation": table[key]["validation"]}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--remeasure", action="store_true", help="measure the grid again instead of the cache")
    args = parser.parse_args()
    cache = ROOT / "bench" / "results" / f"fidelity_grid_{Path(args.config).stem}.json"
    if cache.exists() and not args.remeasure:
        table = {tuple(json.loads(k)): v for k, v in json.loads(cache.read_text()).items()}  # type: ignore[misc]
        print(f"grid: {len(table)} points from {cache} (--remeasure to measure again)")
    else:
        table, seconds = measure_grid(args.config)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({json.dumps(list(k)): v for k, v in table.items()}, indent=1))
        print(f"grid: {len(table)} points measured in {seconds:.0f} s")
    print(f"best validation value in the grid {max(r['validation'] for r in table.values()):.4f}")
    print(f"\n{args.trials} trials per study, {args.seeds} seeds (TPE); mean over seeds:\n")
    print("| budget | pruner | completions per study | compute saved | search best | validation of the selected |")
    print("|---|---|---|---|---|---|")
    full = [simulate(table, "full", "none", args.trials, s) for s in range(args.seeds)]
    full_spent = statistics.mean(r["spent"] for r in full)
    for budget in BUDGETS:
        for pruner in ("none",) if budget == "full" else PRUNERS:
            rs = (
                full
                if budget == "full"
                else [simulate(table, budget, pruner, args.trials, s) for s in range(args.seeds)]
            )
            spent = statistics.mean(r["spent"] for r in rs)
            diffs = [a["validation"] - b["validation"] for a, b in zip(rs, full, strict=True)]
            sd = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
            search, val = statistics.mean(r["search"] for r in rs), statistics.mean(r["validation"] for r in rs)
            print(
                f"| {budget} | {pruner} | {spent:.0f} | {1 - spent / full_spent:.0%} | {search:.4f} "
                f"| {val:.4f} ({statistics.mean(diffs):+.4f} ± {sd:.4f} vs full) |"
            )


if __name__ == "__main__":
    main()
