from __future__ import annotations

import torch

from search.mutate import MutationConfig, allowed_tokens, gcg, mutations, round_trips, substitute
from steering.model import SteerableModel
from steering.scoring import tokenize_continuations
from steering.tokens import cosine_score, likelihood_score, pair_vectors, token_gradients
from steering.vector import PairTokens


def _n_diff(x: PairTokens, y: PairTokens) -> int:
    return sum(s != t for s, t in zip(x.a + x.b, y.a + y.b, strict=True))


def test_candidates_differ_in_one_position_and_stay_readable(tiny: SteerableModel) -> None:
    parent = PairTokens.encode(tiny, "The bride and the groom", "The team")
    target = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1))
    grads = token_gradients(tiny, parent, 1, cosine_score(target))
    allowed = allowed_tokens(tiny, readable=True)
    cands = mutations(tiny, parent, grads, allowed, top_k=8, n=40, gen=torch.Generator().manual_seed(0))
    assert len(cands) > 10 and len(set(cands)) == len(cands)
    for c in cands:
        assert len(c.a) == len(parent.a) and len(c.b) == len(parent.b)
        assert _n_diff(c, parent) == 1
        (pos, new), *_ = [
            (i, t)
            for old, cur in ((parent.a, c.a), (parent.b, c.b))
            for i, (s, t) in enumerate(zip(old, cur, strict=True))
            if s != t
        ]
        text = tiny.tokenizer.decode([new])
        assert text.strip().isalpha() and (text.startswith(" ") or (pos == 0 and text[0].isupper()))  # a word
        assert allowed[0 if pos == 0 else 1][new]
        assert round_trips(tiny, c)


def test_gcg_recovers_a_planted_one_substitution_target(tiny: SteerableModel) -> None:
    start = PairTokens.encode(tiny, "The bride and the groom", "The")
    allowed = allowed_tokens(tiny, readable=True)
    swap = next(
        int(t)
        for t in torch.nonzero(allowed[1])[:, 0]
        if round_trips(tiny, substitute(start, 0, 2, int(t))) and int(t) != start.a[2]
    )
    planted = substitute(start, 0, 2, swap)
    score = cosine_score(pair_vectors(tiny, [planted], 1)[0])
    vocab = int(allowed[0].shape[0])
    res = gcg(tiny, start, 1, score, MutationConfig(steps=2, top_k=vocab, candidates=100_000))  # exhaustive
    assert res.best == planted and res.best_score > 0.9999 > res.start_score


def test_gcg_never_reports_a_score_it_did_not_measure(tiny: SteerableModel) -> None:
    seqs, n_tail = tokenize_continuations(tiny, ["I went up to my friend and said"], [" the bride and the groom"])
    score = likelihood_score(tiny, 1, 4.0, seqs, n_tail)
    start = PairTokens.encode(tiny, "The match", "The")
    res = gcg(tiny, start, 1, score, MutationConfig(steps=3, top_k=8, candidates=8, seed=1))
    assert res.best_score >= res.start_score and res.evaluated > 0 and len(res.history) == 3
    with torch.no_grad():
        again = float(score(pair_vectors(tiny, [res.best], 1))[0])
    assert abs(again - res.best_score) < 1e-5
