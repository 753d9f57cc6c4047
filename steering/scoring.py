"""Teacher-forced passes under steering: log-probabilities of given text, for scoring and fitting.

Rows are left-padded and steered with explicit positions, exactly as in generation, so "front" means
each row's first real tokens. Pass ``grad=True`` to keep the graph (fitting a vector); the model's own
parameters stay frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import Tensor

from steering.hooks import steer
from steering.intervention import Steering
from steering.model import SteerableModel

LOGIT_BUDGET = 1 << 27
"""Most logit entries (rows x positions x vocabulary) ``tail_logprobs`` holds at once, 0.5 GiB of float32 held
about three times (logits, log-softmax, gather); longer row lists are scored in passes of fewer rows. Gemma 3's
262,144-token vocabulary (SmolLM2's is 49,152) put GCG's 512-row passes of ~60 tokens above 30 GB and got a
search OOM-killed on a 24 GiB machine."""


def forward_logits(
    model: SteerableModel, seqs: Sequence[list[int]], steering_rows: Sequence[Steering], *, grad: bool = False
) -> tuple[Tensor, Tensor]:
    """Logits of left-padded ``seqs`` (token ids, as ``encode_text``/``encode_prompt`` give) under per-row steering.

    Returns:
        ``(logits [B, T, V], attention_mask [B, T])``.
    """
    ids, mask = model.pad_left(list(seqs))
    return _padded_logits(model, ids, mask, steering_rows, grad=grad), mask


def _padded_logits(
    model: SteerableModel, ids: Tensor, mask: Tensor, steering_rows: Sequence[Steering], *, grad: bool
) -> Tensor:
    position_ids, index = model.positions(mask)
    rows = steering_rows if any(len(r) for r in steering_rows) else [[]]
    with nullcontext() if grad else torch.no_grad(), steer(model, rows) as step:
        step.set(index, prompt_pass=True)
        logits: Tensor = model.hf(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
    return logits


def tokenize_continuations(
    model: SteerableModel, prefixes: Sequence[str], continuations: Sequence[str]
) -> tuple[list[list[int]], list[int]]:
    """Token ids of prompt + continuation per row, and the count of continuation tokens that are scored.

    A prefix is a prompt the model answers (``SteerableModel.encode_prompt``: BOS, and the chat template in
    chat format). ``prefixes[i]`` may be empty: then the text is scored as it is (``encode_text``), every token
    after BOS, or every token but the first when ``prepend_bos`` is off (nothing predicts it). Continuations
    are tokenised on their own, so start them with a space where a word boundary is meant. Tokenise once,
    outside hot loops.
    """
    if len(prefixes) != len(continuations):
        raise ValueError(f"{len(prefixes)} prefixes but {len(continuations)} continuations")
    if not prefixes:
        raise ValueError("nothing to score")
    heads = [model.encode_prompt(p) if p else model.encode_text("") for p in prefixes]
    tails = [model.tokenizer.encode(c, add_special_tokens=False) for c in continuations]
    seqs = [h + t for h, t in zip(heads, tails, strict=True)]
    n_tail = [min(len(t), len(s) - 1) for t, s in zip(tails, seqs, strict=True)]
    if any(n < 1 for n in n_tail):
        raise ValueError("a continuation is empty (or one token with nothing before it to predict it)")
    return seqs, n_tail


def tail_logprobs(
    model: SteerableModel,
    seqs: Sequence[list[int]],
    n_tail: Sequence[int],
    steering_rows: Sequence[Steering],
    *,
    grad: bool = False,
) -> Tensor:
    """Summed log-probability of the last ``n_tail[i]`` tokens of each sequence, under per-row steering.

    Returns:
        ``sum_logprob [B]``.
    """
    ids, mask = model.pad_left(list(seqs))
    if len(steering_rows) not in (1, len(ids)):
        raise ValueError(f"{len(steering_rows)} steering rows for {len(ids)} sequences (give 1 or one per row)")
    width = ids.shape[1]
    tails = torch.tensor(list(n_tail), device=ids.device)
    target_pos = torch.arange(1, width, device=ids.device)[None, :]  # position of each predicted token
    scored = target_pos >= (width - tails)[:, None]
    step = rows_per_pass(model, width)
    out = []
    for lo in range(0, len(ids), step):
        part = slice(lo, lo + step)
        rows = steering_rows if len(steering_rows) == 1 else steering_rows[part]
        logits = _padded_logits(model, ids[part], mask[part], rows, grad=grad)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # predicts tokens 1..T-1
        token_logp = logp.gather(-1, ids[part, 1:, None])[..., 0]  # [b, T-1]
        out.append((token_logp * scored[part]).sum(dim=1))
    return torch.cat(out)


def rows_per_pass(model: SteerableModel, width: int, budget: int | None = None) -> int:
    """Rows of ``width`` tokens whose logits fit ``budget`` entries (``LOGIT_BUDGET`` by default; at least 1)."""
    return max(1, (LOGIT_BUDGET if budget is None else budget) // (width * _vocab_size(model)))


def _vocab_size(model: SteerableModel) -> int:
    head = model.hf.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.hf.config.vocab_size)


def continuation_logprobs(
    model: SteerableModel,
    prefixes: Sequence[str],
    continuations: Sequence[str],
    steering_rows: Sequence[Steering],
    *,
    grad: bool = False,
) -> tuple[Tensor, Tensor]:
    """Summed log-probability of each continuation's tokens given its prefix (a prompt), and the number of
    tokens scored (see ``tokenize_continuations``).

    Returns:
        ``(sum_logprob [B], n_tokens [B])``.
    """
    seqs, n_tail = tokenize_continuations(model, prefixes, continuations)
    logp = tail_logprobs(model, seqs, n_tail, steering_rows, grad=grad)
    return logp, torch.tensor(n_tail, device=logp.device)


def position_logprobs(
    model: SteerableModel, texts: Sequence[str], steering_rows: Sequence[Steering]
) -> tuple[Tensor, Tensor]:
    """Next-token log-distributions at every real position of each text (``encode_text``: BOS + text).

    Returns:
        ``(logprobs [B, T, V], mask [B, T])`` where mask marks real tokens.
    """
    logits, mask = forward_logits(model, [model.encode_text(t) for t in texts], steering_rows)
    return torch.log_softmax(logits.float(), dim=-1), mask
