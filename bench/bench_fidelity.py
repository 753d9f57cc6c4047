"""What multi-fidelity saves: rungs over prompts against rungs over samples and the full budget, at equal
validation-best.

Every point of a small grid (the config's hand-written pairs x every layer x 6 coefficients) is measured once,
for real, on the search split at the full budget (32 prompts x 2 samples) and on the validation split; the
objective of any rung (a subset of the search completions) is the same items' statistic on that subset, so a
rung's value is exactly what a live trial would report there. Studies with Optuna's TPE sampler and the
project's median pruner then run against that table for many seeds, under three budgets:

- ``full``: every trial spends 32 prompts x 2 samples (no pruning);
- ``samples``: rungs of 1 then 2 samples on all 32 prompts (the old scheme);
- ``prompts``: rungs of 8 prompts (of a seeded permutation) then all 32, 2 samples each (``fidelity.prompts``).

Reported per budget: completions generated per study (compute), the search-split best, and the validation
value of the trial each study would select (its best complete trial), mean over seeds.

    python -m bench.bench_fidelity [--config configs/quickstart.yaml] [--seeds 20] [--trials 32]
"""

from __future__ import annotations

import argparse
import dataclasses
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
BUDGETS: dict[str, list[tuple[int, int]]] = {  # (prompts, samples per prompt) at each rung
    "full": [(32, 2)],
    "samples": [(32, 1), (32, 2)],
    "prompts": [(8, 2), (32, 2)],
}


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
    first8 = [prompts.index(p) for p in order[:8]]
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
                    "full": _subset(m, list(range(len(m.texts)))),
                    "samples@1": _subset(m, [p * SAMPLES for p in range(len(prompts))]),
                    "prompts@8": _subset(m, [p * SAMPLES + s for p in first8 for s in range(SAMPLES)]),
                }
                values = {k: search.objective_of(v) for k, v in rows.items()}
                values["validation"] = validation.objective_of(validation.measure(method).point())
                table[(pair.label, layer, coeff)] = {k: float(v) for k, v in values.items() if v is not None}
    return table, time.perf_counter() - t0


def simulate(table: dict[tuple[str, int, float], dict[str, float]], budget: str, trials: int, seed: int) -> dict:
    rungs = BUDGETS[budget]
    low_key = {"samples": "samples@1", "prompts": "prompts@8"}.get(budget)
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
        if low_key is not None:
            spent += rungs[0][0] * rungs[0][1]
            trial.report(row[low_key], step=rungs[0][0] * rungs[0][1])
            if trial.should_prune():
                raise optuna.TrialPruned()
            spent += rungs[1][0] * rungs[1][1] - rungs[0][0] * rungs[0][1]  # later rungs extend earlier ones
        else:
            spent += rungs[-1][0] * rungs[-1][1]
        return row["full"]

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=make_pruner(StudySpec(), 1))
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    key = (best.params["pair"], best.params["layer"], best.params["coeff"])
    return {"spent": spent, "search": table[key]["full"], "validation": table[key]["validation"]}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    table, seconds = measure_grid(args.config)
    best_validation = max(r["validation"] for r in table.values())
    print(
        f"grid: {len(table)} points measured in {seconds:.0f} s; best validation {best_validation:.4f}"
    )
    results = {b: [simulate(table, b, args.trials, s) for s in range(args.seeds)] for b in BUDGETS}
    full_spent = statistics.mean(r["spent"] for r in results["full"])
    print(f"\n{args.trials} trials per study, {args.seeds} seeds (TPE, median pruner); mean over seeds:\n")
    print("| budget | completions per study | compute saved | search best | validation of the selected |")
    print("|---|---|---|---|---|")
    for budget, rs in results.items():
        spent = statistics.mean(r["spent"] for r in rs)
        val = [r["validation"] for r in rs]
        sd = statistics.stdev(val) / len(val) ** 0.5 if len(val) > 1 else 0.0
        print(
            f"| {budget} | {spent:.0f} | {1 - spent / full_spent:.0%} | {statistics.mean(r['search'] for r in rs):.4f} "
            f"| {statistics.mean(val):.4f} ± {sd:.4f} |"
        )
    for budget in ("samples", "prompts"):
        diffs = [a["validation"] - b["validation"] for a, b in zip(results[budget], results["full"], strict=True)]
        print(
            f"validation of the selected, {budget} − full: {statistics.mean(diffs):+.4f} (same seeds; n={len(diffs)})"
        )


if __name__ == "__main__":
    main()
