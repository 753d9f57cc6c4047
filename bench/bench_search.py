"""Search efficiency on a small quickstart space: TPE vs the full grid, and what multi-fidelity pruning saves.

The trial objective is deterministic (seeded generation, deterministic scoring), so each grid point is
evaluated once, for real, at both rungs (2 and 8 samples per prompt; the 2-sample value is the first rung
of the 8-sample run). Studies with Optuna's own TPE sampler and median pruner then run against that table
for many seeds: the same numbers a live study would see, at a fraction of the cost.

1. Evaluations TPE needs until its best reaches 95% of the grid optimum, ÷ grid size (target <= 20%).
2. Compute (generated samples) of a pruned study (rungs 2 -> 8) vs the same study unpruned, and the best
   full-budget value each found (target: >= 40% saved at equal best).

    python -m bench.bench_search [--seeds 20] [--trials 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import time
from pathlib import Path

import optuna
import torch

from objectives import Evaluator, Objective
from search.config import StudySpec, load_config
from search.session import Scorers, load_data, metrics_for
from search.space import Pair
from search.study import make_pruner
from steering import Addition, SteeringVector, generate_candidates, load_model

ROOT = Path(__file__).parents[1]
COEFFS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def evaluate_grid(cfg_path: str) -> dict[tuple[str, int, float], tuple[float, float]]:
    cfg = load_config(cfg_path)
    data = load_data(cfg)
    model = load_model(cfg.model.source)
    metrics = metrics_for(cfg, data)
    scorers = Scorers.build(cfg, metrics, data)
    evaluator = Evaluator(metrics, data.eval_data("search"), bertscorer=scorers.bert)
    objective = Objective(cfg.objective)
    prompts = list(data.prompts.search)
    pairs = [Pair(*b.pair) for b in cfg.baselines]
    points = list(itertools.product(pairs, range(model.n_layers), COEFFS))
    low, high = cfg.fidelity.rungs[0], cfg.fidelity.rungs[-1]
    gen = dataclasses.replace(cfg.generation, n=high)
    table = {}
    t0 = time.perf_counter()
    for pair, layer in itertools.product(pairs, range(model.n_layers)):
        vec = SteeringVector.from_pair(model, pair.a, pair.b, layer)
        cands = [[Addition(vec, c)] for c in COEFFS]
        outs = generate_candidates(model, prompts, cands, dataclasses.replace(gen, batch_size=128))
        for coeff, steering, out in zip(COEFFS, cands, outs, strict=True):
            model_raw = evaluator.model_metrics(model, steering)
            rung = [evaluator.text_metrics([t for row in out for t in row[:k]]) | model_raw for k in (low, high)]
            table[(pair.label, layer, coeff)] = (float(objective.value(rung[0])), float(objective.value(rung[1])))
    print(
        f"evaluated {len(points)} grid points ({len(prompts)} prompts x {high} samples) in "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    return table


def tpe_study(
    table, seed: int, n_trials: int, pruned: bool, rungs: tuple[int, int], study_spec: StudySpec | None = None
) -> tuple[list[float], int]:
    labels = sorted({k[0] for k in table})
    layers = sorted({k[1] for k in table})
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    pruner = make_pruner(study_spec or StudySpec(), 1) if pruned else optuna.pruners.NopPruner()  # the study's own
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    cost = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal cost
        key = (
            trial.suggest_categorical("pair", labels),
            trial.suggest_int("layer", layers[0], layers[-1]),
            trial.suggest_categorical("coeff", COEFFS),
        )
        first, full = table[key]
        if pruned:
            cost += rungs[0]
            trial.report(first, step=rungs[0])
            if trial.should_prune():
                raise optuna.TrialPruned
            cost += rungs[1] - rungs[0]
        else:
            cost += rungs[1]
        return full

    study.optimize(objective, n_trials=n_trials)
    best, curve = -float("inf"), []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            best = max(best, t.value)
        curve.append(best)
    return curve, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(args.config)
    rungs = (cfg.fidelity.rungs[0], cfg.fidelity.rungs[-1])
    table = evaluate_grid(args.config)
    optimum = max(v[1] for v in table.values())
    target = 0.95 * optimum if optimum > 0 else optimum * 1.05
    need = []
    for seed in range(args.seeds):
        curve, _ = tpe_study(table, seed, len(table), pruned=False, rungs=rungs)
        need.append(next(i + 1 for i, b in enumerate(curve) if b >= target))
    print(f"| TPE vs grid ({len(table)} points, optimum {optimum:.4f}) | value |")
    print("|---|---|")
    print(
        f"| evaluations to reach 95% of the optimum, mean over {args.seeds} seeds | {statistics.mean(need):.1f} "
        f"(median {statistics.median(need):.0f}, max {max(need)}) |"
    )
    print(f"| ÷ grid size | {statistics.mean(need) / len(table):.1%} |\n")

    plain = [tpe_study(table, s, args.trials, False, rungs) for s in range(args.seeds)]
    pruned = [tpe_study(table, s, args.trials, True, rungs, cfg.study) for s in range(args.seeds)]
    cost_plain = statistics.mean(c for _, c in plain)
    cost_pruned = statistics.mean(c for _, c in pruned)
    best_plain = statistics.mean(curve[-1] for curve, _ in plain)
    best_pruned = statistics.mean(curve[-1] for curve, _ in pruned)
    print(f"| {args.trials} TPE trials, mean over {args.seeds} seeds | samples per prompt generated | best value |")
    print("|---|---|---|")
    print(f"| full budget ({rungs[1]} samples) every trial | {cost_plain:.0f} | {best_plain:.4f} |")
    print(f"| {cfg.study.pruner} pruner, rungs {rungs[0]} -> {rungs[1]} | {cost_pruned:.0f} | {best_pruned:.4f} |")
    print(f"| compute saved | {1 - cost_pruned / cost_plain:.0%} | {best_pruned - best_plain:+.4f} |")


if __name__ == "__main__":
    main()
