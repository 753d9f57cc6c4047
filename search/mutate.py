"""GCG-style discrete search over a prompt pair's tokens.

Each step takes the gradient of a cheap differentiable score (e.g. the gold log-likelihood under the
pair's vector) with respect to one-hot pair tokens, keeps the top-k substitutions per position, builds a
batch of candidates that each differ from the current pair in exactly one position, scores the batch in
batched passes, and moves to the batch's best. The best pair seen is returned. Substitutions can be
restricted to readable word tokens, and candidates whose text does not re-tokenise to the same tokens
are dropped, so every result is a pair of strings that means what it scored.

The score is only a proxy: adversarial winners enter the Optuna study as pool pairs and are judged by
the real objective there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from search.config.features import MutationConfig
from steering.model import SteerableModel
from steering.tokens import VectorScore, any_token_mask, pair_vectors, readable_token_mask, token_gradients
from steering.vector import PairTokens


@dataclass
class MutationResult:
    start: PairTokens
    best: PairTokens
    start_score: float
    best_score: float
    history: list[float] = field(default_factory=list)  # the batch's best score after each step
    evaluated: int = 0


def allowed_tokens(model: SteerableModel, readable: bool) -> tuple[Tensor, Tensor]:
    """Masks of substitutions allowed at a prompt's first position and at later ones."""
    if not readable:
        anything = any_token_mask(model)
        return anything, anything
    return readable_token_mask(model, first=True), readable_token_mask(model, first=False)


def round_trips(model: SteerableModel, pair: PairTokens) -> bool:
    """Whether each side's text tokenises back to exactly its tokens (so the string pair is this pair)."""
    a, b = pair.decode(model.tokenizer)
    return tuple(model.encode(a)[1:]) == pair.a and tuple(model.encode(b)[1:]) == pair.b


def substitute(pair: PairTokens, side: int, pos: int, token: int) -> PairTokens:
    sides = [list(pair.a), list(pair.b)]
    sides[side][pos] = token
    return PairTokens(tuple(sides[0]), tuple(sides[1]), pair.filler)


def mutations(
    model: SteerableModel,
    pair: PairTokens,
    grads: tuple[Tensor, Tensor],
    allowed: tuple[Tensor, Tensor],
    *,
    top_k: int,
    n: int,
    gen: torch.Generator,
) -> list[PairTokens]:
    """Up to ``n`` distinct pairs, each one allowed substitution away from ``pair`` and round-tripping.

    Substitutions for a position are its ``top_k`` allowed tokens by gradient (the current token excluded);
    ``allowed`` is ``(at the first position, at later positions)``.
    """
    options: list[tuple[int, int, int]] = []
    for side, (tokens, grad) in enumerate(zip((pair.a, pair.b), grads, strict=True)):
        for pos, current in enumerate(tokens):
            g = grad[pos].clone()
            mask = allowed[0] if pos == 0 else allowed[1]
            g[~mask[: g.shape[0]]] = -torch.inf
            g[current] = -torch.inf
            k = min(top_k, int(torch.isfinite(g).sum()))
            options += [(side, pos, int(t)) for t in torch.topk(g, k).indices]
    if not options:
        return []
    out: list[PairTokens] = []
    seen: set[PairTokens] = set()
    for i in torch.randperm(len(options), generator=gen).tolist():
        cand = substitute(pair, *options[i])
        if cand not in seen and round_trips(model, cand):
            seen.add(cand)
            out.append(cand)
            if len(out) == n:
                break
    return out


def gcg(
    model: SteerableModel, start: PairTokens, layer: int, score: VectorScore, cfg: MutationConfig
) -> MutationResult:
    """Maximise ``score`` of the pair's vector at ``layer`` over single-token substitutions.

    Example:
        >>> res = gcg(model, PairTokens.encode(model, " weddings", ""), 1, likelihood_score(...), MutationConfig())
        >>> res.best.decode(model.tokenizer), res.best_score
    """
    allowed = allowed_tokens(model, cfg.readable)
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        start_score = float(score(pair_vectors(model, [start], layer))[0])
    current, best, best_score = start, start, start_score
    result = MutationResult(start, start, start_score, start_score)
    for _ in range(cfg.steps):
        grads = token_gradients(model, current, layer, score)
        batch = mutations(model, current, grads, allowed, top_k=cfg.top_k, n=cfg.candidates, gen=gen)
        if not batch:
            break
        with torch.no_grad():
            scores = score(pair_vectors(model, batch, layer))
        result.evaluated += len(batch)
        i = int(scores.argmax())
        current = batch[i]
        result.history.append(float(scores[i]))
        if float(scores[i]) > best_score:
            best, best_score = current, float(scores[i])
    result.best, result.best_score = best, best_score
    return result
