from __future__ import annotations

import pytest
import torch

from steering import Addition, SteeringVector
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs, tokenize_continuations
from steering.tokens import (
    any_token_mask,
    cosine_score,
    likelihood_score,
    pair_vectors,
    readable_token_mask,
    token_gradients,
)
from steering.vector import PairTokens

ROWS = [("I went up to my friend and said", " the bride"), ("The", " wedding was lovely")]


def test_batched_pair_vectors_equal_from_pair(tiny: SteerableModel) -> None:
    texts = [("The bride", "The match"), ("The groom", "The team"), ("wedding", "")]
    pairs = [PairTokens.encode(tiny, a, b) for a, b in texts]
    by_width: dict[int, list[int]] = {}
    for i, p in enumerate(pairs):
        by_width.setdefault(p.width, []).append(i)
    for idx in by_width.values():
        vecs = pair_vectors(tiny, [pairs[i] for i in idx], 1, chunk=2)
        for k, i in enumerate(idx):
            assert torch.allclose(vecs[k], SteeringVector.from_pair(tiny, *texts[i], 1).activations, atol=1e-5)
    with pytest.raises(ValueError, match="one width"):
        pair_vectors(tiny, pairs, 1)


def test_token_gradients_see_the_pairs_own_vector(tiny: SteerableModel) -> None:
    pair = PairTokens.encode(tiny, "The bride and", "The")
    seen: list[torch.Tensor] = []
    target = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))

    def score(vectors: torch.Tensor) -> torch.Tensor:
        seen.append(vectors.detach())
        return cosine_score(target)(vectors)

    ga, gb = token_gradients(tiny, pair, 1, score)
    assert torch.allclose(seen[0][0], pair_vectors(tiny, [pair], 1)[0], atol=1e-5)  # one-hot path == ids path
    vocab = tiny.hf.get_input_embeddings().weight.shape[0]
    assert ga.shape == (len(pair.a), vocab) and gb.shape == (len(pair.b), vocab)
    assert torch.isfinite(ga).all() and ga.abs().sum() > 0 and gb.abs().sum() > 0
    assert all(p.grad is None for p in tiny.hf.parameters())


class _ScaledEmbedding(torch.nn.Embedding):
    """An embedding that scales its output, like Gemma 3's."""

    embed_scale = 3.0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * self.embed_scale


def test_token_gradients_match_the_ids_path_when_the_embedding_scales() -> None:
    from steering.testing import tiny_model

    model = tiny_model(seed=1)  # its own copy: the embedding module is replaced below
    old = model.hf.get_input_embeddings()
    scaled = _ScaledEmbedding(old.num_embeddings, old.embedding_dim)
    scaled.weight = old.weight
    model.hf.set_input_embeddings(scaled)
    pair = PairTokens.encode(model, "The bride and", "The")
    seen: list[torch.Tensor] = []

    def score(vectors: torch.Tensor) -> torch.Tensor:
        seen.append(vectors.detach())
        return vectors.sum(dim=(1, 2))

    token_gradients(model, pair, 1, score)
    assert torch.allclose(seen[0][0], pair_vectors(model, [pair], 1)[0], atol=1e-5)


def test_likelihood_score_batches_candidates_like_single_passes(tiny: SteerableModel) -> None:
    seqs, n_tail = tokenize_continuations(tiny, [p for p, _ in ROWS], [c for _, c in ROWS])
    pairs = [PairTokens.encode(tiny, a, b) for a, b in (("The bride", "The match"), ("The groom", "The team"))]
    vecs = pair_vectors(tiny, pairs, 1)
    with torch.no_grad():
        batched = likelihood_score(tiny, 1, 4.0, seqs, n_tail, max_rows=2)(vecs)
    for k in range(2):
        add = [Addition(SteeringVector(vecs[k], 1), 4.0)]
        logp, n = continuation_logprobs(tiny, [p for p, _ in ROWS], [c for _, c in ROWS], [add])
        assert abs(float(batched[k]) - float(logp.sum() / n.sum())) < 1e-4


def test_token_masks(tiny: SteerableModel) -> None:
    readable, anything = readable_token_mask(tiny), any_token_mask(tiny)
    assert 0 < int(readable.sum()) < int(anything.sum())
    for i in torch.nonzero(readable)[:, 0].tolist():
        text = tiny.tokenizer.decode([i])
        assert text.strip().isalpha() and (text.startswith(" ") or text[0].isupper())
    later = readable_token_mask(tiny, first=False)
    assert int(later.sum()) < int(readable.sum())
    assert all(tiny.tokenizer.decode([i]).startswith(" ") for i in torch.nonzero(later)[:, 0].tolist())
    assert not anything[tiny.bos_token_id]
