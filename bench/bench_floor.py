"""The physical floor of generation on this machine: how fast could a model generate if it did nothing but its
matrix products at the speed this CPU multiplies matrices, and how close does steersearch's steered generation
come?

1. Matmul FLOP/s: the model's own weight matrices (every block's projections and the output layer), each
   multiplied by a ``[M, d_in]`` activation in fp32, timed as one decode step's worth of products (all
   layers, then the output layer); FLOP/s = 2 x M x (weights) / time. Measured at M = the generation batch
   (what a decode step multiplies) and at M = 256 (near this CPU's peak), interleaved with the generation
   runs so that load from other processes on a shared machine slows both alike.
2. FLOPs per token: 2 x (non-embedding parameters + output layer), the products of one token's forward
   pass; attention over the context is left out (under 2% here at 50 tokens of context).
3. Floor: FLOP/s / FLOPs per token = tokens/s; steersearch's steered ``generate`` (B sampled completions of
   40 new tokens, ActAdd front addition) in tokens/s against it.

    OMP_NUM_THREADS=1 python -m bench.bench_floor [--model smollm2-135m] [--batch 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from steering import Addition, GenerationConfig, SteeringVector, generate, load_model
from steering.model import SteerableModel

PROMPT = "I went up to my friend and said"


def weight_matrices(model: SteerableModel) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every ``nn.Linear`` weight of the decoder blocks, and the output layer's weight ``[V, d]``.

    GPT-2's ``Conv1D`` layers hold their weight as ``[d_in, d_out]``; they are transposed to ``[d_out, d_in]``.
    """
    mats: list[torch.Tensor] = []
    for block in model.blocks:
        for m in block.modules():
            if isinstance(m, nn.Linear):
                mats.append(m.weight.detach())
            elif type(m).__name__ == "Conv1D":
                mats.append(m.weight.detach().t().contiguous())  # type: ignore[operator]  # HF types it loosely
    head = model.hf.get_output_embeddings().weight.detach()
    return mats, head


def matmul_step(mats: list[torch.Tensor], head: torch.Tensor, m: int) -> tuple[Callable[[], None], float]:
    """One decode step's products ``x @ W.T`` at ``m`` rows, as a function, and their FLOPs."""
    xs = {w.shape[1]: torch.randn(m, w.shape[1]) for w in [*mats, head]}

    def step() -> None:
        for w in mats:
            xs[w.shape[1]] @ w.t()
        xs[head.shape[1]] @ head.t()

    return step, 2.0 * m * sum(w.numel() for w in [*mats, head])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--coeff", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    mats, head = weight_matrices(model)
    block_params = sum(w.numel() for w in mats)
    per_token = 2.0 * (block_params + head.numel())
    steps = {m: matmul_step(mats, head, m) for m in (args.batch, 256)}
    vec = SteeringVector.from_pair(model, " weddings", "", layer=args.layer)
    config = GenerationConfig(max_new_tokens=args.new_tokens, n=args.batch, seed=0, batch_size=args.batch)

    def steered() -> None:
        generate(model, [PROMPT], [Addition(vec, args.coeff)], config)

    # Interleaved repeats, so that other load on a shared machine slows both sides alike; medians.
    times: dict[int | str, list[float]] = {"generate": [], **{m: [] for m in steps}}
    with torch.no_grad():
        for step, _ in steps.values():
            step()  # warm-up
        generate(model, [PROMPT], [Addition(vec, args.coeff)], GenerationConfig(max_new_tokens=2, n=args.batch))
        for _ in range(args.repeats):
            for m, (step, _) in steps.items():
                times[m].append(timed(step))
            times["generate"].append(timed(steered))
    rates = {m: (flops / statistics.median(times[m]), statistics.median(times[m])) for m, (_, flops) in steps.items()}
    gen_seconds = statistics.median(times["generate"])
    tokens = args.batch * args.new_tokens
    gen_rate = tokens / gen_seconds

    total = sum(p.numel() for p in model.hf.parameters())
    print(
        f"model {model.name}: {total / 1e6:.1f}M parameters; block matrices {block_params / 1e6:.1f}M + output layer "
        f"{head.numel() / 1e6:.1f}M -> {per_token / 1e6:.0f} MFLOP per token; threads {args.threads}, fp32, "
        f"medians of {args.repeats}\n"
    )
    print("| measure | value |")
    print("|---|---|")
    for m, (rate, sec) in rates.items():
        floor = rate / per_token
        print(
            f"| matmul at M={m} (one decode step's products: {sec * 1e3:.1f} ms) | {rate / 1e9:.1f} GFLOP/s "
            f"-> floor {floor:.0f} tokens/s |"
        )
    print(
        f"| steersearch steered `generate`, B={args.batch}, {args.new_tokens} new tokens (layer {args.layer}, "
        f"coeff {args.coeff}) | {gen_seconds:.2f} s = {gen_rate:.0f} tokens/s |"
    )
    for m, (rate, _) in rates.items():
        print(f"| generation ÷ floor at M={m} | {gen_rate / (rate / per_token):.2f} |")


if __name__ == "__main__":
    main()
