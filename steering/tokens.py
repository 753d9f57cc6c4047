"""Token-level work on prompt pairs: batched pair vectors, gradients with respect to one-hot pair tokens,
and the differentiable scores that discrete pair search (GCG-style mutation, distillation) maximises.

A score maps candidate vectors ``[K, n_pos, d]`` to ``[K]`` (higher is better) and is differentiable
whenever grad mode is on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from steering.intervention import FRONT, Addition, Positions
from steering.model import SteerableModel
from steering.scoring import tail_logprobs
from steering.vector import PairTokens, SteeringVector, resid_at, resid_pre

VectorScore = Callable[[Tensor], Tensor]
"""``[K, n_pos, d]`` candidate vectors -> ``[K]`` scores (higher is better)."""

WORD = re.compile(r"^( [A-Za-z]+|[A-Z][a-z]*)$")
SPACED_WORD = re.compile(r"^ [A-Za-z]+$")


def embedding_matrix(model: SteerableModel) -> Tensor:
    """``[V, d]`` input token embeddings (frozen); V may exceed the tokenizer's length (padded vocab)."""
    weight = model.hf.get_input_embeddings().weight
    assert isinstance(weight, Tensor)
    return weight


def readable_token_mask(model: SteerableModel, *, first: bool = True) -> Tensor:
    """``[V]`` bool: tokens that decode to one plain word: letters with one leading space, or, for the first
    token of a prompt (``first``), also a capitalised word without it ("The", "I"). A word piece glued to
    the previous token ("wedd" + "ings", "ongs") is not readable; a space-led piece (" toget") still passes,
    as a BPE vocabulary cannot tell it from a word."""
    vocab = embedding_matrix(model).shape[0]
    special = set(model.tokenizer.all_special_ids)
    pattern = WORD if first else SPACED_WORD
    ok = [
        i < len(model.tokenizer) and i not in special and bool(pattern.match(str(model.tokenizer.decode([i]))))
        for i in range(vocab)
    ]
    return torch.tensor(ok)


def any_token_mask(model: SteerableModel) -> Tensor:
    """``[V]`` bool: every real, non-special token."""
    vocab = embedding_matrix(model).shape[0]
    mask = torch.arange(vocab) < len(model.tokenizer)
    mask[[i for i in model.tokenizer.all_special_ids if i < vocab]] = False
    return mask


def pair_vectors(model: SteerableModel, pairs: Sequence[PairTokens], layer: int, *, chunk: int = 256) -> Tensor:
    """ActAdd vectors of many pairs of one width in batched passes: ``[K, width, d]`` (float32).

    Equals ``SteeringVector.from_pair`` of each pair's text when the text round-trips to the same tokens.
    """
    if not pairs:
        raise ValueError("no pairs")
    widths = {p.width for p in pairs}
    if len(widths) != 1:
        raise ValueError(f"pairs must share one width to be batched, got widths {sorted(widths)}")
    rows = torch.cat([p.padded(model.bos_token_id) for p in pairs])  # [2K, W]: a0, b0, a1, b1, ...
    acts = resid_pre(model, rows, layer, chunk=chunk)
    return (acts[0::2] - acts[1::2]).float()


def token_gradients(model: SteerableModel, pair: PairTokens, layer: int, score: VectorScore) -> tuple[Tensor, Tensor]:
    """Gradient of ``score`` of the pair's vector with respect to one-hot encodings of its tokens.

    Only the pair's own tokens are relaxed (not BOS, not the filler). GCG reads ``grad[p, t]`` as the
    first-order gain from putting token ``t`` at position ``p``.

    Returns:
        ``(grad_a [len(a), V], grad_b [len(b), V])``, float32 on CPU.
    """
    emb = embedding_matrix(model)  # [V, d], frozen
    ids = pair.padded(model.bos_token_id).to(model.device)  # [2, W]
    embed = model.hf.get_input_embeddings()
    # Some embedding modules scale their output (Gemma 3's ``embed_scale``); the relaxed rows must match.
    scale = getattr(embed, "embed_scale", 1.0)
    onehots = []
    rows = []
    for r, side in enumerate((pair.a, pair.b)):
        onehot = torch.zeros(len(side), emb.shape[0], device=model.device, dtype=emb.dtype)
        if side:
            onehot[torch.arange(len(side)), torch.tensor(side, device=model.device)] = 1.0
        onehot.requires_grad_(True)
        onehots.append(onehot)
        fixed = embed(ids[r])  # [W, d], exactly what the ids path feeds the model
        rows.append(torch.cat([fixed[:1], (onehot @ emb) * scale, fixed[1 + len(side) :]]))
    with torch.enable_grad():
        acts = resid_at(model, layer, inputs_embeds=torch.stack(rows))  # [2, W, d]
        value = score((acts[0] - acts[1]).float()[None])[0]
        value.backward()
    return tuple(  # type: ignore[return-value]
        (o.grad if o.grad is not None else torch.zeros_like(o)).float().cpu() for o in onehots
    )


def likelihood_score(
    model: SteerableModel,
    layer: int,
    coeff: float,
    seqs: Sequence[list[int]],
    n_tail: Sequence[int],
    *,
    positions: Positions = FRONT,
    max_rows: int = 512,
) -> VectorScore:
    """Mean log-likelihood per token of the continuations (``tokenize_continuations`` rows) when
    ``coeff * vector`` is added at ``layer``; candidates are scored together in passes of ``max_rows`` rows.
    """
    n, total = len(seqs), float(sum(n_tail))
    per_pass = max(1, max_rows // max(1, n))

    def score(vectors: Tensor) -> Tensor:
        out = []
        for start in range(0, vectors.shape[0], per_pass):
            chunk = vectors[start : start + per_pass]
            steering = [
                [Addition(SteeringVector(chunk[k], layer), coeff, positions)] for k in range(len(chunk)) for _ in seqs
            ]
            logp = tail_logprobs(
                model, list(seqs) * len(chunk), list(n_tail) * len(chunk), steering, grad=torch.is_grad_enabled()
            )
            out.append(logp.view(len(chunk), n).sum(dim=1) / total)
        return torch.cat(out)

    return score


def cosine_score(target: Tensor) -> VectorScore:
    """Cosine between each candidate's position-summed vector and ``target`` (``[d]`` or ``[n_pos, d]``)."""
    goal = (target.sum(dim=0) if target.ndim == 2 else target).float()

    def score(vectors: Tensor) -> Tensor:
        return torch.nn.functional.cosine_similarity(vectors.sum(dim=1), goal.to(vectors.device)[None], dim=-1)

    return score


def compress_positions(target: Tensor, n: int) -> Tensor:
    """``[P, d]`` -> ``[n, d]``: the target's positions after the first (BOS, shared by both sides of a pair, so
    zero) split into ``n`` contiguous chunks in order, each chunk summed; zero rows pad when ``n > P - 1``.

    ``n = 1`` is the position-summed vector; ``n = P - 1`` is the target itself, position by position.

    Example:
        >>> compress_positions(torch.arange(5.0)[:, None], 2).flatten().tolist()
        [3.0, 7.0]
    """
    body = target[1:]
    if n >= body.shape[0]:
        return torch.cat([body, body.new_zeros(n - body.shape[0], body.shape[1])])
    return torch.stack([chunk.sum(dim=0) for chunk in torch.tensor_split(body, n)])


def positional_cosine_score(target: Tensor) -> VectorScore:
    """Cosine between each candidate's positions after BOS, flattened, and ``target [P, d]`` compressed into as
    many positions (``compress_positions``): a short pair added at the front must put each part of the target
    at the same place in order, not just point along its sum. A single coefficient scales the whole candidate,
    so this cosine is what fixes the best reachable error: ``min_c |c s - t|^2 = |t|^2 (1 - cos^2)``."""
    goal = target.float()

    def score(vectors: Tensor) -> Tensor:
        body = vectors[:, 1:].flatten(1)  # [K, (W-1) d]
        want = compress_positions(goal, vectors.shape[1] - 1).flatten().to(vectors.device)
        return torch.nn.functional.cosine_similarity(body, want[None], dim=-1)

    return score
