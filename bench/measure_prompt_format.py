"""Prompt format on a real model: the wedding-word rate of ActAdd's `" weddings"` / `""` with prompts fed plain
or as a user turn of the chat template (``prompt_format: chat``), unsteered and steered, same prompts and seeds;
beside it the mean BERTScore F1 against the weddings gold passages (search part), what the search optimises.

The setting of the README's SmolLM2 model card: the 8 first search prompts x 8 samples (n=64), 30 new tokens,
temperature 1, top-p 0.3, frequency penalty 1, front positions; the vector is the same in every format (pairs
are plain text after BOS).

    OMP_NUM_THREADS=1 python -m bench.measure_prompt_format [--model smollm2-135m] [--layers 15 18] [--coeff 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from objectives.bertscore import ScorerSpec
from objectives.gold import load_gold_set, load_split
from objectives.keywords import KeywordRate
from search.config import shipped_file
from steering import Addition, GenerationConfig, SteeringVector, generate_candidates, load_model
from steering.model import SteerableModel

FORMATS = {
    "plain": {"prompt_format": "plain"},
    "chat": {"prompt_format": "chat"},
    "chat, no BOS": {"prompt_format": "chat", "prepend_bos": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", type=int, nargs="+", default=[15, 18])
    parser.add_argument("--coeff", type=float, default=4.0)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_model(args.model)
    prompts = list(load_split(shipped_file("gold/prompts.yaml")).search[: args.prompts])
    gold = load_gold_set(shipped_file("gold/weddings.yaml"))
    rate = KeywordRate(gold.keywords)
    scorer = ScorerSpec().build()
    refs = scorer.references(gold.passages.search)
    gen = GenerationConfig(max_new_tokens=30, n=args.samples, temperature=1.0, top_p=0.3, freq_penalty=1.0, seed=0)
    vectors = {layer: SteeringVector.from_pair(base, " weddings", "", layer=layer) for layer in args.layers}
    n = len(prompts) * args.samples
    print(f"model {args.model}, ' weddings' / '', coeff {args.coeff}, front positions, n={n} per cell")
    print("cells: wedding-word rate / mean BERTScore F1 against the gold passages\n")
    print("| prompt format | unsteered | " + " | ".join(f"layer {layer}" for layer in args.layers) + " | seconds |")
    print("|---|---|" + "---|" * len(args.layers) + "---|")
    for label, settings in FORMATS.items():
        model: SteerableModel = base.with_settings(bos_token=None, **settings)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        candidates = [[], *([Addition(vectors[layer], args.coeff)] for layer in args.layers)]
        out = generate_candidates(model, prompts, candidates, gen)
        flat = [[s for row in cand for s in row] for cand in out]
        rates = [rate.score(texts).rate for texts in flat]
        f1s = [float(scorer.score(texts, refs).f1.mean()) for texts in flat]
        cells = " | ".join(f"{r:.3f} / {f:.3f}" for r, f in zip(rates, f1s, strict=True))
        print(f"| {label} | {cells} | {time.perf_counter() - t0:.0f} |", flush=True)
        for name, texts in zip(["unsteered", *(f"layer {la}" for la in args.layers)], flat, strict=True):
            print(f"    {label}, {name}: {texts[0]!r} / {texts[9]!r}")


if __name__ == "__main__":
    main()
