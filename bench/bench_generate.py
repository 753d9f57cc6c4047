"""Steered generation speed, as ratios measured in one run on the same weights.

1. steersearch ``generate`` (B=16 sampled completions, 40 new tokens, ActAdd front addition) vs raw HF
   ``generate`` with a ``forward_pre_hook`` doing the same addition on the prompt pass. Also the
   TransformerBridge's own cached ``generate`` with the same steering (TL hooks), for context.
2. K=32 candidates in one batch: per-candidate time / the time of one candidate alone.

Timings interleave the methods and report medians over ``--repeats`` (the machine is noisy).

    python -m bench.bench_generate [--model DIR] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from steering import Addition, GenerationConfig, SteeringVector, generate, generate_candidates, load_model, steer
from steering.model import SteerableModel

PROMPT = "I went up to my friend and said"
PAIR = ("I talk about weddings constantly", "I do not talk about weddings constantly")


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_generation(
    model: SteerableModel, layer: int, coeff: float, batch: int, new: int, repeats: int
) -> dict[str, float]:
    vec = SteeringVector.from_pair(model, *PAIR, layer=layer)
    add = Addition(vec, coeff)
    cfg = GenerationConfig(max_new_tokens=new, n=batch, temperature=1.0, top_p=0.3, freq_penalty=0.0, batch_size=batch)
    ids = torch.tensor([model.encode(PROMPT)] * batch)
    delta = (coeff * vec.activations).to(model.device)

    def pre_hook(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        if h.shape[1] > 1:  # prompt pass only, as ActAdd
            h = h.clone()
            h[:, : delta.shape[0]] += delta
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    def raw_hf() -> None:
        handle = model.blocks[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            with torch.no_grad():
                model.hf.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_p=0.3,
                    temperature=1.0,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    pad_token_id=model.bos_token_id,
                )
        finally:
            handle.remove()

    def ours() -> None:
        generate(model, [PROMPT], [add], cfg)

    def bridge() -> None:
        with torch.no_grad(), steer(model, [add], on="bridge"):
            model.bridge.generate(
                ids,
                max_new_tokens=new,
                do_sample=True,
                top_p=0.3,
                temperature=1.0,
                stop_at_eos=False,
                verbose=False,
                use_past_kv_cache=True,
                return_type="tokens",
            )

    return _median_times(
        {"raw HF generate + pre-hook": raw_hf, "steersearch generate": ours, "TransformerBridge.generate": bridge},
        repeats,
    )


def bench_candidates(model: SteerableModel, layer: int, k: int, n: int, new: int, repeats: int) -> dict[str, float]:
    vec = SteeringVector.from_pair(model, *PAIR, layer=layer)
    cands = [[Addition(vec, float(c))] for c in torch.linspace(1, 16, k).tolist()]
    cfg = GenerationConfig(max_new_tokens=new, n=n, batch_size=k * n)
    t = _median_times(
        {
            "K=1": lambda: generate_candidates(model, [PROMPT], cands[:1], cfg),
            f"K={k}": lambda: generate_candidates(model, [PROMPT], cands, cfg),
        },
        repeats,
    )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: embedded tiny-topics)")
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--coeff", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model)
    print(
        f"model {model.name}: {model.n_layers} layers, d_model {model.d_model}, threads {args.threads}, "
        f"median of {args.repeats}\n"
    )

    g = bench_generation(model, args.layer, args.coeff, batch=16, new=40, repeats=args.repeats)
    base = g["raw HF generate + pre-hook"]
    print("| steered generation, B=16, 40 new tokens | seconds | ÷ raw HF |")
    print("|---|---|---|")
    for name, sec in g.items():
        print(f"| {name} | {sec:.3f} | {sec / base:.2f}× |")

    c = bench_candidates(model, args.layer, args.k, n=4, new=40, repeats=max(3, args.repeats // 2))
    one, many = c["K=1"], c[f"K={args.k}"]
    print("\n| batched candidates (4 samples each, 40 tokens) | seconds | per candidate | ÷ K=1 |")
    print("|---|---|---|---|")
    print(f"| K=1 | {one:.3f} | {one:.3f} | 1.00 |")
    print(f"| K={args.k} in one batch | {many:.3f} | {many / args.k:.4f} | {many / args.k / one:.3f} |")


if __name__ == "__main__":
    main()
