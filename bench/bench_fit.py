"""Gradient-fitting step time: steersearch ``fit_vector`` vs a raw HuggingFace loop, same weights and rows.

Both sides fit a ``[1, d_model]`` vector at one layer, added at every token after BOS ("from:1"), with
Adam (lr 0.05) on the mean teacher-forced log-likelihood of the continuation tokens of B gold rows
(``(prompt, " " + passage)``, the same B rows every step):

1. steersearch: ``fit_vector(model, layer, rows, config=FitConfig(steps=S, batch_size=B))``; exactly B
   rows are passed, so every step uses all of them.
2. raw HF: the rows tokenised and left-padded once (BOS + prefix + continuation, attention mask,
   ``position_ids = cumsum - 1`` clamped), a ``torch.nn.Parameter`` added by a ``forward_pre_hook`` on
   the HF block, ``log_softmax`` + ``gather`` of the continuation tokens, ``loss.backward()``, Adam.

Each side's time per step is one whole fit (tokenisation included on both sides) divided by S. The two
methods alternate over ``--repeats`` runs after a warm-up, and the median is reported (the machine is
noisy). The losses of both sides are compared step by step (the math is the same). Target: steersearch
÷ raw HF <= 1.1×.

    OMP_NUM_THREADS=1 python -m bench.bench_fit [--sizes embedded,gpt2-small,smollm2-135m] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import objectives
from search.vectors import gold_rows
from steering import load_model
from steering.catalog import CATALOG
from steering.fit import FitConfig, fit_vector
from steering.model import SteerableModel
from steering.scoring import tokenize_continuations

ROOT = Path(__file__).parents[1]
POSITIONS_FROM = 1  # "from:1": every token after BOS


def raw_hf_fit(
    model: SteerableModel, layer: int, rows: Sequence[tuple[str, str]], steps: int, lr: float
) -> list[float]:
    """The same fit as ``fit_vector`` written directly against ``model.hf``; returns the loss per step."""
    prefixes, conts = zip(*rows, strict=True)
    heads = [model.encode(p) for p in prefixes]
    tails = [model.tokenizer.encode(c, add_special_tokens=False) for c in conts]
    seqs = [h + t for h, t in zip(heads, tails, strict=True)]
    n_tail = torch.tensor([len(t) for t in tails], device=model.device)
    ids, mask = model.pad_left(seqs)
    rel = (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, -1)  # index from each row's first real token
    position_ids = rel.clamp(min=0)
    on = (rel >= POSITIONS_FROM)[..., None].to(next(model.hf.parameters()).dtype)  # [B, T, 1]
    width = ids.shape[1]
    scored = torch.arange(1, width, device=ids.device)[None, :] >= (width - n_tail)[:, None]  # [B, T-1]
    targets = ids[:, 1:, None]
    n_tokens = int(n_tail.sum())

    param = torch.nn.Parameter(torch.zeros(1, model.d_model, device=model.device))
    opt = torch.optim.Adam([param], lr=lr)

    def pre_hook(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (args[0] + on * param, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + on * param}

    losses = []
    handle = model.blocks[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        for _ in range(steps):
            logits = model.hf(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets)[..., 0]
            loss = -(logp * scored).sum() / n_tokens
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        handle.remove()
    return losses


def steersearch_fit(
    model: SteerableModel, layer: int, rows: Sequence[tuple[str, str]], steps: int, lr: float
) -> list[float]:
    cfg = FitConfig(lr=lr, steps=steps, batch_size=len(rows), positions=f"from:{POSITIONS_FROM}")
    return fit_vector(model, layer, rows, config=cfg).losses


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function: one warm-up each, then ``repeats`` rounds alternating the order."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def bench_model(
    model: SteerableModel, layer: int, rows: Sequence[tuple[str, str]], steps: int, lr: float, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per whole fit of each side, and each side's losses (from its last fit)."""
    losses: dict[str, list[float]] = {}
    sides = {"steersearch": steersearch_fit, "raw HF": raw_hf_fit}

    def side(name: str) -> Callable[[], None]:
        def fit() -> None:
            losses[name] = sides[name](model, layer, rows, steps, lr)

        return fit

    return interleaved({name: side(name) for name in sides}, repeats), losses


def gpt2_small_shaped(tokenizer_source: SteerableModel) -> SteerableModel:
    """A randomly initialised GPT-2-small-shaped model (12 layers, d_model 768) on the embedded tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer_source.tokenizer
    bos = tokenizer_source.bos_token_id
    cfg = GPT2Config(
        n_layer=12, n_embd=768, n_head=12, n_positions=256, vocab_size=len(tok), bos_token_id=bos, eos_token_id=bos
    )
    torch.manual_seed(0)
    return load_model("gpt2-shaped", hf_model=GPT2LMHeadModel(cfg), tokenizer=tok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="embedded,gpt2-small",
        help="comma list of: embedded, gpt2-small, or a named real model (smollm2-135m, gemma3-270m)",
    )
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="rows per step (B)")
    parser.add_argument("--steps", type=int, default=20, help="steps per fit (embedded model)")
    parser.add_argument("--gpt2-steps", type=int, default=3, help="steps per fit (gpt2-small)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gpt2-repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = set(sizes) - {"embedded", "gpt2-small", *CATALOG}
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; use embedded, gpt2-small or {', '.join(CATALOG)}")

    prompts = objectives.load_split(ROOT / "configs" / "gold" / "prompts.yaml").search
    passages = objectives.load_gold_set(ROOT / "configs" / "gold" / "weddings.yaml").passages.search
    rows = gold_rows(prompts, passages, max_rows=args.batch)
    if len(rows) != args.batch:
        raise SystemExit(f"only {len(rows)} gold rows available, asked for B={args.batch}")

    embedded = load_model(None)
    seqs, n_tail = tokenize_continuations(embedded, *zip(*rows, strict=True))
    width = max(len(s) for s in seqs)
    print(
        f"layer {args.layer}, positions from:{POSITIONS_FROM}, Adam lr {args.lr}, B={args.batch} rows "
        f"(tokens per row: {min(len(s) for s in seqs)}-{width}, padded to {width}; {sum(n_tail)} scored), "
        f"threads {args.threads}\n"
    )

    results = []
    checks = []
    for size in sizes:
        if size == "embedded":
            model, steps, repeats = embedded, args.steps, args.repeats
        elif size == "gpt2-small":
            model, steps, repeats = gpt2_small_shaped(embedded), args.gpt2_steps, args.gpt2_repeats
        else:  # a real model, at the same step and repeat counts as the GPT-2-small-shaped one
            model, steps, repeats = load_model(size), args.gpt2_steps, args.gpt2_repeats
        t0 = time.perf_counter()
        times, losses = bench_model(model, args.layer, rows, steps, args.lr, repeats)
        wall = time.perf_counter() - t0
        ours = statistics.median(times["steersearch"]) / steps
        raw = statistics.median(times["raw HF"]) / steps
        label = f"{Path(model.name).name} ({model.n_layers}L, d {model.d_model})"
        results.append((label, width, ours, raw, steps, repeats, wall))
        diffs = [abs(a - b) for a, b in zip(losses["steersearch"], losses["raw HF"], strict=True)]
        checks.append((label, losses["steersearch"][0], losses["raw HF"][0], diffs[0], max(diffs), steps))

    print("| model | B | tokens per row (padded) | steersearch ms/step | raw HF ms/step | ÷ raw HF |")
    print("|---|---|---|---|---|---|")
    for label, w, ours, raw, *_ in results:
        print(f"| {label} | {args.batch} | {w} | {ours * 1e3:.1f} | {raw * 1e3:.1f} | {ours / raw:.3f}× |")
    print()
    for label, _, _, _, steps, repeats, wall in results:
        print(f"{label}: median of {repeats} fits of {steps} steps each side ({wall:.0f} s)")

    print("\n| model | loss step 1 (steersearch) | loss step 1 (raw HF) | abs diff step 1 | max abs diff, all steps |")
    print("|---|---|---|---|---|")
    ok = True
    for label, a, b, d1, dmax, _steps in checks:
        print(f"| {label} | {a:.6f} | {b:.6f} | {d1:.2e} | {dmax:.2e} |")
        ok = ok and d1 <= 1e-5
    print(f"\nstep-1 losses match to 1e-5: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
