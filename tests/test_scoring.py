from __future__ import annotations

import torch

from steering import Addition, SteeringVector
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs


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
