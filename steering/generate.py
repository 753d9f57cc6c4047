"""Batched, seeded, steered generation on the HF module (the fast path).

Rows are (candidate, prompt, sample) triples. Each row draws its sampling noise from its own generator
seeded by ``(seed, prompt index, sample index)``, never by the candidate or the batch it lands in, so:
- the same call gives the same strings whatever ``batch_size`` is;
- unsteered and steered runs with the same seed share their random numbers (a paired comparison).

Sampling is an exact inverse-CDF draw: one uniform per row and step, pre-drawn from the row's generator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from steering.hooks import steer
from steering.intervention import Steering
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings. ActAdd used temperature 1, top_p 0.3 and frequency penalty 1.

    Attributes:
        max_new_tokens: tokens generated per completion.
        n: completions per prompt.
        temperature: 0 means greedy.
        top_p: nucleus sampling mass (1 keeps every token).
        freq_penalty: OpenAI-style; subtracts ``freq_penalty * count`` of each token generated so far.
        seed: base seed; row noise is keyed by (seed, prompt index, sample index).
        batch_size: rows per forward pass.
        first_sample: index of the first sample; samples ``first_sample .. first_sample + n - 1`` are drawn,
            so a later call can extend an earlier one exactly (multi-fidelity scoring).
        first_prompt: index of the first prompt; prompt ``i`` of a call is seeded as prompt
            ``first_prompt + i``, so a later call on more prompts continues an earlier one exactly.
    """

    max_new_tokens: int = 40
    n: int = 8
    temperature: float = 1.0
    top_p: float = 0.3
    freq_penalty: float = 1.0
    seed: int = 0
    batch_size: int = 64
    first_sample: int = 0
    first_prompt: int = 0

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "n": self.n >= 1,
            "temperature": self.temperature >= 0,
            "top_p": 0 < self.top_p <= 1,
            "freq_penalty": self.freq_penalty >= 0,
            "batch_size": self.batch_size >= 1,
            "first_sample": self.first_sample >= 0,
            "first_prompt": self.first_prompt >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid generation setting {bad[0]}={getattr(self, bad[0])!r}")


def generate(
    model: SteerableModel,
    prompts: Sequence[str],
    steering: Steering = (),
    config: GenerationConfig = GenerationConfig(),
) -> list[list[str]]:
    """Generate ``config.n`` completions per prompt, with ``steering`` applied (or none).

    Returns:
        ``completions[prompt_index][sample_index]``, completions only (no prompt text).

    Example:
        >>> vec = SteeringVector.from_pair(model, "weddings", "", layer=1)
        >>> generate(model, ["I went up to my friend and said"], [Addition(vec, 8.0)])
    """
    return generate_candidates(model, prompts, [steering], config)[0]


def generate_candidates(
    model: SteerableModel,
    prompts: Sequence[str],
    candidates: Sequence[Steering],
    config: GenerationConfig = GenerationConfig(),
) -> list[list[list[str]]]:
    """Generate for K steering candidates at once; rows of one forward pass may belong to different candidates.

    Returns:
        ``completions[candidate][prompt][sample]``.
    """
    if not prompts:
        raise ValueError("prompts is empty")
    if any(not p for p in prompts):
        raise ValueError("prompts must be non-empty strings")
    if not candidates:
        raise ValueError("candidates is empty")
    rows = [(c, p, s) for c in range(len(candidates)) for p in range(len(prompts)) for s in range(config.n)]
    out: list[list[list[str]]] = [[[""] * config.n for _ in prompts] for _ in candidates]
    for lo in range(0, len(rows), config.batch_size):
        chunk = rows[lo : lo + config.batch_size]
        texts = [prompts[p] for _, p, _ in chunk]
        steering_rows = [list(candidates[c]) for c, _, _ in chunk]
        seeds = [_row_seed(config.seed, config.first_prompt + p, config.first_sample + s) for _, p, s in chunk]
        for (c, p, s), text in zip(chunk, generate_batch(model, texts, steering_rows, seeds, config), strict=True):
            out[c][p][s] = text
        logger.debug("generated %d/%d rows", min(lo + config.batch_size, len(rows)), len(rows))
    return out


@torch.no_grad()
def generate_batch(
    model: SteerableModel,
    texts: Sequence[str],
    steering_rows: Sequence[Steering],
    seeds: Sequence[int],
    config: GenerationConfig,
) -> list[str]:
    """One batch: row i continues ``texts[i]`` under ``steering_rows[i]`` with noise seeded by ``seeds[i]``."""
    ids, mask = model.left_padded(list(texts))
    tokens = decode_loop(model, ids, mask, steering_rows, seeds, config)
    eos = model.tokenizer.eos_token_id
    results: list[str] = []
    row: list[int]
    for row in tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        results.append(str(model.tokenizer.decode(row, skip_special_tokens=True)))
    return results


def decode_loop(
    model: SteerableModel,
    ids: Tensor,
    mask: Tensor,
    steering_rows: Sequence[Steering],
    seeds: Sequence[int],
    config: GenerationConfig,
) -> Tensor:
    """Cached decoding of ``config.max_new_tokens`` tokens for a left-padded batch; returns ``[B, new]``."""
    batch = ids.shape[0]
    vocab = model.hf.get_output_embeddings().weight.shape[0]
    steps = config.max_new_tokens
    uniforms = torch.stack([torch.rand(steps, generator=torch.Generator().manual_seed(s)) for s in seeds])
    uniforms = uniforms.to(ids.device)  # [B, steps]: row i's draws depend on seeds[i] only
    counts = torch.zeros(batch, vocab, device=ids.device)
    ones = torch.ones(batch, 1, device=ids.device)
    position_ids, index = model.positions(mask)  # [B, T] each; index counts from BOS, -1 for padding
    has_steering = any(len(r) for r in steering_rows)
    new: list[Tensor] = []
    with steer(model, steering_rows if has_steering else [[]]) as step:
        step.set(index, prompt_pass=True)
        out = model.hf(
            input_ids=ids,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=True,
            return_dict=True,
            logits_to_keep=1,
        )
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos, next_index = position_ids[:, -1:] + 1, index[:, -1:] + 1  # [B, 1] each
        for i in range(config.max_new_tokens):
            token = _pick(logits, counts, uniforms[:, i], config)  # [B]
            new.append(token)
            if i + 1 == config.max_new_tokens:
                break
            if config.freq_penalty:
                counts.scatter_add_(1, token[:, None], ones)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step.set(next_index, prompt_pass=False)
            out = model.hf(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                return_dict=True,
                **{model.cache_kwarg: cache},
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos, next_index = next_pos + 1, next_index + 1
    return torch.stack(new, dim=1)


def _pick(logits: Tensor, counts: Tensor, uniforms: Tensor, config: GenerationConfig) -> Tensor:
    logits = logits.float()
    # NaN (or +inf) logits would sample garbage silently; -inf is a legitimately masked token.
    if bool((torch.isnan(logits) | torch.isposinf(logits)).any()):
        raise FloatingPointError("the model produced NaN or inf logits (a steering vector too large or not finite?)")
    if config.freq_penalty:
        logits = logits - config.freq_penalty * counts
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / config.temperature, dim=-1)
    if config.top_p < 1:
        probs, index = _nucleus(probs, config.top_p)
    else:
        index = None
    cdf = probs.cumsum(dim=-1)
    pick = torch.searchsorted(cdf, uniforms[:, None] * cdf[:, -1:], right=True).clamp(max=cdf.shape[-1] - 1)
    return pick[:, 0] if index is None else index.gather(1, pick)[:, 0]


_NUCLEUS_TOPK = 64


def _nucleus(probs: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """Probabilities (descending, zero outside the nucleus) and their token ids.

    A top-k of 64 holds the whole nucleus whenever its mass reaches ``top_p``; only otherwise is the full
    vocabulary sorted. Either way the result is exact.
    """
    vals, index = probs.topk(min(_NUCLEUS_TOPK, probs.shape[-1]), dim=-1)
    if bool((vals.sum(dim=-1) < top_p).any()):
        vals, index = probs.sort(dim=-1, descending=True)
    keep = (vals.cumsum(dim=-1) - vals) < top_p  # always keeps the top token
    return vals * keep, index


def _row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    return int(np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)[0])
