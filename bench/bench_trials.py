"""Trials per hour: the quickstart trial definition, steersearch vs a naive loop, same model and candidate.

- steersearch: ``SteeringObjective`` on a ``FixedTrial`` (batched generation of 8 prompts x 8 samples,
  cached-reference BERTScore, perplexity ratio), at the full sample budget (no pruning), scorer built once.
- naive: one HF ``generate`` per sample with a ``forward_pre_hook`` doing the ActAdd addition, then
  ``bert_score.score()`` per trial (which loads its encoder on every call), and the same perplexity ratio.

    python -m bench.bench_trials [--trials 3] [--threads 2]
    OMP_NUM_THREADS=1 python -m bench.bench_trials --model smollm2-135m --threads 1

``--model`` picks the model's shipped weddings config (``tiny``: quickstart, ``smollm2-135m``:
smollm2-weddings, ``gemma3-270m``: gemma3-weddings), whose model settings, generation settings and first
baseline (the trial timed) are used; ``--config`` names any other. The trial's definition is fixed here, not
taken from the config, so that rows measured at different times stay comparable: the first ``--prompts``
search prompts x ``--samples`` samples, and the objective ``bertscore_f1 - 0.2 rep_rate`` with a perplexity-ratio
constraint, the metrics the naive loop computes too.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from bert_score import score as bert_score_fn

from objectives import Objective
from objectives.bertscore import DEFAULT_NUM_LAYERS, default_model_path
from objectives.compose import Constraint, ObjectiveSpec, Term
from objectives.damage import PerplexityRatio
from objectives.evaluate import Evaluator
from objectives.text import repetition_rate
from search.analysis.select import written_candidate
from search.config import load_config
from search.config.features import FidelitySpec
from search.objective import SteeringObjective
from search.session import Scorers, full_pool, load_data, load_experiment_model, metrics_for
from search.space import Candidate
from steering import MaskMode, SteeringVector
from steering.model import SteerableModel

ROOT = Path(__file__).parents[1]
CONFIG_FOR = {"tiny": "quickstart", "smollm2-135m": "smollm2-weddings", "gemma3-270m": "gemma3-weddings"}
TRIAL = ObjectiveSpec(
    terms=(Term("bertscore_f1"), Term("rep_rate", -0.2)), constraints=(Constraint("ppl_ratio", max=3.0, penalty=0.01),)
)
"""The objective timed (the quickstart's before it moved to steer_score)."""


def pair_delta(model: SteerableModel, cand: Candidate) -> tuple[int, torch.Tensor]:
    """The layer and ``[n, d]`` addition of a one-addition pair candidate (coefficient and frac mask applied)."""
    (choice,) = cand.additions
    assert choice.pair is not None and choice.mask == MaskMode.FIRST and choice.positions == "front"
    vec = SteeringVector.from_pair(model, choice.pair.a, choice.pair.b, choice.layer)
    delta = choice.coeff * vec.activations
    delta[:, round(choice.frac * model.d_model) :] = 0
    return choice.layer, delta


def front_hook(delta: torch.Tensor, starts: torch.Tensor) -> Callable[..., Any]:
    """A pre-hook adding ``delta`` at positions ``starts[i] ..`` of row i on the prompt pass only."""
    offsets = torch.arange(delta.shape[0])

    def pre_hook(_m: torch.nn.Module, a: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        h = a[0] if a else kw["hidden_states"]
        if h.shape[1] > 1:
            h = h.clone()
            cols = (starts[:, None] + offsets[None, :]).clamp(max=h.shape[1] - 1)  # [B, n]
            h[torch.arange(h.shape[0])[:, None], cols] += delta[None, : h.shape[1]]
        return ((h, *a[1:]), kw) if a else (a, {**kw, "hidden_states": h})

    return pre_hook


def naive_trial(
    model: SteerableModel,
    cand: Candidate,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    gold: list[str],
    ppl: PerplexityRatio,
) -> None:
    layer, delta = pair_delta(model, cand)
    texts = []
    one = torch.zeros(1, dtype=torch.long)
    handle = model.blocks[layer].register_forward_pre_hook(front_hook(delta, one), with_kwargs=True)
    try:
        for p in prompts:
            ids = torch.tensor([model.encode_prompt(p)])
            for _s in range(n):
                out = model.hf.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_p=0.3,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=model.pad_token_id,
                )
                texts.append(model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    finally:
        handle.remove()
    bert_score_fn(
        [t if t.strip() else "." for t in texts],
        [gold] * len(texts),
        model_type=default_model_path(),
        num_layers=DEFAULT_NUM_LAYERS,
    )
    repetition_rate(texts)
    ppl.score(model, [])  # the unsteered reference only (cheaper than ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(CONFIG_FOR), default="tiny")
    parser.add_argument("--config", default=None, help="experiment YAML (default: the model's, see above)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8, help="the first N search prompts (default 8)")
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shipped = load_config(args.config or ROOT / "configs" / f"{CONFIG_FOR[args.model]}.yaml")
    cfg = dataclasses.replace(shipped, objective=TRIAL)
    data = load_data(cfg)
    model = load_experiment_model(cfg)
    b = cfg.baselines[0]
    params = {"pair": f"{b.pair[0]} || {b.pair[1]}", "layer": b.layer, "coeff": b.coeff, "frac": 1.0}
    full = FidelitySpec((args.samples,))
    prompts, gold = list(data.prompts.search[: args.prompts]), list(data.gold.passages.search)
    n = full.rungs[0]

    t0 = time.perf_counter()
    metrics = metrics_for(cfg, data)
    scorers = Scorers.build(cfg, metrics, data)
    evaluator = Evaluator(metrics, data.eval_data("search"), bertscorer=scorers.bert)
    objective = SteeringObjective(
        model=model,
        evaluator=evaluator,
        objective=Objective(cfg.objective),
        space=cfg.space,
        pool=full_pool(cfg),
        prompts=prompts,
        generation=cfg.generation,
        fidelity=full,
    )
    setup = time.perf_counter() - t0
    ours = []
    for i in range(args.trials):
        t0 = time.perf_counter()
        objective(optuna.trial.FixedTrial(params, number=i))
        ours.append(time.perf_counter() - t0)

    ppl = PerplexityRatio(data.neutral.search)
    cand = written_candidate(dataclasses.replace(b, frac=1.0))
    naive = []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        naive_trial(model, cand, prompts, n, cfg.generation.max_new_tokens, gold, ppl)
        naive.append(time.perf_counter() - t0)

    o, v = sum(ours) / len(ours), sum(naive) / len(naive)
    print(
        f"model {model.name} (config {cfg.name}, baseline {b.pair} at layer {b.layer}, coeff {b.coeff}), "
        f"{len(prompts)} prompts x {n} samples x {cfg.generation.max_new_tokens} tokens, "
        f"threads {args.threads}, mean of {args.trials} trials (steersearch setup once: {setup:.1f} s)\n"
    )
    print("| trial loop | seconds per trial | trials per hour | ratio |")
    print("|---|---|---|---|")
    print(f"| naive (generate per sample, bert_score.score per trial) | {v:.2f} | {3600 / v:.0f} | 1.00× |")
    print(f"| steersearch SteeringObjective | {o:.2f} | {3600 / o:.0f} | {v / o:.1f}× |")


if __name__ == "__main__":
    main()
