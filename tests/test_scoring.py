from __future__ import annotations

from typing import Any

import pytest
import torch

from steering import Addition, SteeringVector, scoring
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs, tokenize_continuations


def _manual(model: SteerableModel, prefix: str, cont: str) -> float:
    head = model.encode(prefix)
    tail = model.tokenizer.encode(cont, add_special_tokens=False)
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logp = torch.log_softmax(model.hf(ids).logits[0, :-1], dim=-1)
    return float(sum(logp[len(head) - 1 + i, t] for i, t in enumerate(tail)))


def test_matches_manual_computation_in_a_padded_batch(tiny: SteerableModel) -> None:
    prefixes = ["I went up to my friend and said", "", "The"]
    conts = [" the bride", " calm sea at night", " groom danced"]
    logp, n = continuation_logprobs(tiny, prefixes, conts, [[]])
    for i in range(3):
        assert abs(float(logp[i]) - _manual(tiny, prefixes[i], conts[i])) < 1e-4
    assert n.tolist() == [len(tiny.tokenizer.encode(c, add_special_tokens=False)) for c in conts]


def test_steering_changes_it_and_gradients_reach_only_the_vector(tiny: SteerableModel) -> None:
    param = torch.nn.Parameter(torch.zeros(2, tiny.d_model))
    add = [Addition(SteeringVector(param, layer=1), 1.0)]
    logp, _ = continuation_logprobs(tiny, ["The bride"], [" and the groom"], [add], grad=True)
    logp.sum().backward()
    assert param.grad is not None and param.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.hf.parameters())
    with torch.no_grad():
        param += 5.0 * torch.randn(param.shape, generator=torch.Generator().manual_seed(0))
    moved, _ = continuation_logprobs(tiny, ["The bride"], [" and the groom"], [add])
    assert abs(float(moved[0]) - float(logp[0].detach())) > 1e-3


def test_passes_split_by_the_logit_budget_give_the_same_scores(
    tiny: SteerableModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row list whose logits exceed LOGIT_BUDGET is scored in passes of fewer rows, per-row steering kept."""
    vec = SteeringVector(torch.randn(2, tiny.d_model, generator=torch.Generator().manual_seed(1)), layer=1)
    prefixes = ["I went up to my friend and said", "", "The", "We"]
    conts = [" the bride", " calm sea at night", " groom danced", " ate soup"]
    rows = [[], [Addition(vec, 3.0)], [Addition(vec, -2.0)], []]
    whole, _ = continuation_logprobs(tiny, prefixes, conts, rows)
    each = zip(prefixes, conts, rows, strict=True)
    alone = torch.cat([continuation_logprobs(tiny, [p], [c], [r])[0] for p, c, r in each])
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=0)  # each row under its own steering
    seqs, _ = tokenize_continuations(tiny, prefixes, conts)
    width = max(len(s) for s in seqs)
    assert scoring.rows_per_pass(tiny, width) >= 4  # one pass by default
    monkeypatch.setattr(scoring, "LOGIT_BUDGET", width * tiny.hf.config.vocab_size * 3 // 2)  # 1 row a pass
    calls: list[int] = []
    real = scoring._padded_logits

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(len(args[1]))  # rows in this pass
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_padded_logits", counted)
    split, _ = continuation_logprobs(tiny, prefixes, conts, rows)
    assert calls == [1, 1, 1, 1]
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="3 steering rows for 4 sequences"):
        continuation_logprobs(tiny, prefixes, conts, rows[:3])
