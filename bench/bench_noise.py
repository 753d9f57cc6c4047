"""How noisy is the objective at the search budget, and how many completions does a difference of 0.01 need?

A candidate's objective on the search split (all search prompts x the last rung's samples per prompt, the
budget a surviving trial spends) is a statistic of its completions, neutral texts and off-target prompts. Its
standard error is the spread of that statistic over bootstrap resamples of those items. Two candidates scored on
the same prompts and seeds are paired: the SE of their difference is far below the two SEs combined, because
prompt-to-prompt and seed-to-seed noise cancels. Measured for the config's first hand-written baseline (or
``--baseline I``) against the same pair at 1.25x its coefficient, a neighbour a search would have to tell
apart. The completions needed for a 95% CI half-width of 0.01 follow from SE ~ 1/sqrt(n):
``n_needed = n * (1.96 * SE / 0.01) ** 2``.

    python -m bench.bench_noise [--config configs/quickstart.yaml] [--resamples 1000] [--baseline I]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
from pathlib import Path

from search.analysis.evaluation import Measured, Method, SplitEvaluator, joint_draws
from search.analysis.select import written_candidate
from search.config import load_config
from search.session import Scorers, load_data, load_experiment_model, metrics_for
from search.vectors import VectorCache

ROOT = Path(__file__).parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=0, help="which of the config's baselines (index)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    samples = cfg.fidelity.rungs[-1]
    cfg = dataclasses.replace(cfg, compare=dataclasses.replace(cfg.compare, n=samples))
    data = load_data(cfg)
    model = load_experiment_model(cfg)
    search = SplitEvaluator(cfg, data, model, Scorers.build(cfg, metrics_for(cfg, data), data), "search")
    b = cfg.baselines[args.baseline]
    vectors = VectorCache()
    measured: dict[str, Measured] = {}
    for coeff in (b.coeff, b.coeff * 1.25):
        cand = written_candidate(dataclasses.replace(b, coeff=coeff))
        measured[cand.describe()] = search.measure(Method(cand.describe(), cand.steering(model, vectors)))
    (name_a, a), (name_b, bb) = measured.items()
    draws = joint_draws(a, args.resamples, seed=0)

    def value(m: Measured, draw: dict | None = None) -> float:
        v = search.objective_of(m.point(draw))
        assert v is not None, "the config's objective is not a scalar"
        return v

    va, vb = [value(a, d) for d in draws], [value(bb, d) for d in draws]
    se_a, se_b = statistics.stdev(va), statistics.stdev(vb)
    se_paired = statistics.stdev([x - y for x, y in zip(va, vb, strict=True)])
    se_unpaired = math.hypot(se_a, se_b)
    n = len(a.texts)
    print(f"{cfg.name}: search split, {len(data.prompts.search)} prompts x {samples} samples = {n} completions")
    print(f"objective: {', '.join(t.metric for t in cfg.objective.terms)}; {args.resamples} bootstrap resamples\n")
    print("| quantity | value | completions for a 95% CI half-width of 0.01 |")
    print("|---|---|---|")
    for label, se in (
        (f"SE of one candidate's objective ({name_a}, value {value(a):.4f})", se_a),
        (f"SE of the neighbour's ({name_b}, value {value(bb):.4f})", se_b),
        ("SE of their difference, independent seeds", se_unpaired),
        (f"SE of their difference, paired (diff {value(a) - value(bb):+.4f})", se_paired),
    ):
        print(f"| {label} | {se:.4f} | {math.ceil(n * (1.96 * se / 0.01) ** 2)} |")


if __name__ == "__main__":
    main()
