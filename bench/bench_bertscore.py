"""BERTScore throughput, multi-reference: steersearch's cached-reference scorer vs ``BERTScorer.score``.

The search's pattern: many calls, each scoring one candidate's completions against the same gold set.
Both scorers are built once (same MiniLM encoder, same layer); only the scoring calls are timed,
interleaved, median over repeats. The numbers are checked equal before timing.

    python -m bench.bench_bertscore [--calls 8] [--completions 32] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bert_score import BERTScorer as Reference

from objectives.bertscore import DEFAULT_NUM_LAYERS, BertScorer, default_model_path
from objectives.gold import load_gold_set

GOLD = Path(__file__).parents[1] / "configs" / "gold" / "weddings.yaml"
WORDS = (
    "the wedding was lovely and the bride smiled at her friends while the band played a song "
    "we went to the market and bought bread cheese and apples before the rain started again"
).split()


def completions(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(12, 30, (1,), generator=g))
        idx = torch.randint(0, len(WORDS), (length,), generator=g).tolist()
        out.append(" ".join(WORDS[i] for i in idx).capitalize() + ".")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8, help="scoring calls per timing (one per candidate)")
    parser.add_argument("--completions", type=int, default=32, help="completions per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gold = list(load_gold_set(GOLD).passages.search)
    batches = [completions(args.completions, seed) for seed in range(args.calls)]

    ours = BertScorer()
    ref = Reference(model_type=default_model_path(), num_layers=DEFAULT_NUM_LAYERS)
    refs = ours.references(gold)
    a, b = ours.score(batches[0], refs).f1, ref.score(batches[0], [gold] * len(batches[0]))[2]
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()

    def run_ours() -> None:
        gold_refs = ours.references(gold)  # once per study in practice; timed here to be fair
        for batch in batches:
            ours.score(batch, gold_refs)

    def run_ref() -> None:
        for batch in batches:
            ref.score(batch, [gold] * len(batch))

    fns = {"bert_score.BERTScorer.score": run_ref, "steersearch BertScorer.score": run_ours}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    n = args.calls * args.completions
    base = statistics.median(times["bert_score.BERTScorer.score"])
    print(
        f"MiniLM-L6 layer {DEFAULT_NUM_LAYERS}, {len(gold)} references, {args.calls} calls x "
        f"{args.completions} completions, threads {args.threads}, median of {args.repeats}\n"
    )
    print("| scorer | seconds | completions/s | speed-up |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {t:.3f} | {n / t:.0f} | {base / t:.2f}× |")


if __name__ == "__main__":
    main()
