from __future__ import annotations

import pytest
import torch

from steering import Addition, MaskMode, Positions, SteeringVector, steer
from steering.model import SteerableModel

PROMPT = "I went up to my friend and said"


def _vec(model: SteerableModel, layer: int = 1, seed: int = 0) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    return SteeringVector.from_tensor(torch.randn(3, model.d_model, generator=g), layer)


def _resid_in(model: SteerableModel, tokens: torch.Tensor, layer: int, **kw) -> torch.Tensor:
    """Input that block `layer` actually receives (after any steering pre-hook)."""
    box = []
    h = model.blocks[layer].register_forward_hook(
        lambda m, a, kwargs, out: box.append(a[0] if a else kwargs["hidden_states"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model.hf(tokens, **kw)
    finally:
        h.remove()
    return box[0]


def _n_hooks(model: SteerableModel) -> int:
    hf = sum(len(b._forward_pre_hooks) for b in model.blocks)
    tl = sum(len(hp._forward_hooks) for hp in model.bridge.hook_dict.values())
    return hf + tl


@pytest.mark.parametrize("on", ["hf", "bridge"])
def test_hooks_removed_when_body_raises(tiny: SteerableModel, on: str) -> None:
    before = _n_hooks(tiny)
    with pytest.raises(RuntimeError, match="boom"), steer(tiny, [Addition(_vec(tiny), 1.0)], on=on):
        assert _n_hooks(tiny) > before
        raise RuntimeError("boom")
    assert _n_hooks(tiny) == before


def test_failed_attach_leaves_no_hook(tiny: SteerableModel) -> None:
    before = _n_hooks(tiny)
    bad = Addition(SteeringVector.from_tensor(torch.zeros(5), layer=0), 1.0)  # wrong d_model
    with pytest.raises(ValueError, match="d_model"), steer(tiny, [bad]):
        pass
    assert _n_hooks(tiny) == before


def test_a_failure_after_some_hooks_are_attached_removes_them(
    tiny: SteerableModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cleanup path itself: layer 0's hook is attached, then attaching layer 1's fails."""
    before = _n_hooks(tiny)
    attached: list[int] = []
    real = tiny.blocks[0].register_forward_pre_hook

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        attached.append(0)
        return real(*args, **kwargs)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot attach to block 1")

    monkeypatch.setattr(tiny.blocks[0], "register_forward_pre_hook", spy)
    monkeypatch.setattr(tiny.blocks[1], "register_forward_pre_hook", refuse)
    adds = [Addition(_vec(tiny, layer=0), 1.0), Addition(_vec(tiny, layer=1), 1.0)]
    with pytest.raises(RuntimeError, match="block 1"), steer(tiny, adds):
        pass
    assert attached == [0]  # one hook really was attached before the failure
    assert _n_hooks(tiny) == before


def test_front_adds_vector_at_first_positions_only(tiny: SteerableModel) -> None:
    vec = _vec(tiny)
    tokens = torch.tensor([tiny.encode(PROMPT)])
    clean = _resid_in(tiny, tokens, 1)
    with steer(tiny, [Addition(vec, 2.0)]):
        steered = _resid_in(tiny, tokens, 1)
    diff = (steered - clean)[0]
    assert torch.allclose(diff[:3], 2.0 * vec.activations, atol=1e-5)
    assert diff[3:].abs().max() == 0


def test_bridge_and_hf_attachment_agree(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode(PROMPT)])
    adds = [Addition(_vec(tiny), 2.0), Addition(_vec(tiny, layer=0, seed=1), -1.0, positions=Positions.parse("all"))]
    with torch.no_grad():
        with steer(tiny, adds, on="hf"):
            hf_logits = tiny.hf(tokens).logits
        with steer(tiny, adds, on="bridge"):
            bridge_logits = tiny.bridge(tokens)
        plain = tiny.hf(tokens).logits
    assert torch.allclose(hf_logits, bridge_logits, atol=1e-5)
    assert not torch.allclose(hf_logits, plain, atol=1e-3)


def test_frac_first_touches_first_dims_only(tiny: SteerableModel) -> None:
    add = Addition(_vec(tiny), 1.0, frac=0.25)
    mask = add.dim_mask()
    assert mask[:8].all() and mask[8:].sum() == 0
    assert (add.delta()[:, 8:] == 0).all() and (add.delta()[:, :8] != 0).all()


def test_random_mask_is_seeded(tiny: SteerableModel) -> None:
    vec = _vec(tiny)
    a = Addition(vec, 1.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=3).dim_mask()
    b = Addition(vec, 1.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=3).dim_mask()
    c = Addition(vec, 1.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=4).dim_mask()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.sum() == 16 and not a[:16].all()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_frac_out_of_range(tiny: SteerableModel, bad: float) -> None:
    with pytest.raises(ValueError, match="frac"):
        Addition(_vec(tiny), 1.0, frac=bad)


def test_positions_all_and_from(tiny: SteerableModel) -> None:
    vec = _vec(tiny)
    tokens = torch.tensor([tiny.encode(PROMPT)])
    clean = _resid_in(tiny, tokens, 1)
    with steer(tiny, [Addition(vec, 1.0, positions=Positions.parse("all"))]):
        all_diff = (_resid_in(tiny, tokens, 1) - clean)[0]
    with steer(tiny, [Addition(vec, 1.0, positions=Positions.parse("from:4"))]):
        from_diff = (_resid_in(tiny, tokens, 1) - clean)[0]
    summed = vec.activations.sum(0)
    assert torch.allclose(all_diff, summed.expand_as(all_diff), atol=1e-5)
    assert from_diff[:4].abs().max() == 0
    assert torch.allclose(from_diff[4:], summed.expand_as(from_diff[4:]), atol=1e-5)


@pytest.mark.parametrize("text", ["middle", "from:-1", "from:x"])
def test_bad_positions_text(text: str) -> None:
    with pytest.raises(ValueError):
        Positions.parse(text)


def test_several_additions_sum(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode(PROMPT)])
    v0, v1 = _vec(tiny, layer=1, seed=0), _vec(tiny, layer=1, seed=1)
    clean = _resid_in(tiny, tokens, 1)
    with steer(tiny, [Addition(v0, 1.0), Addition(v1, 2.0)]):
        both = _resid_in(tiny, tokens, 1) - clean
    expected = v0.activations + 2.0 * v1.activations
    assert torch.allclose(both[0, :3], expected, atol=1e-5)


def test_additions_at_two_layers(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode(PROMPT)])
    a0, a1 = Addition(_vec(tiny, layer=0), 1.0), Addition(_vec(tiny, layer=1, seed=1), 1.0)
    with torch.no_grad():
        with steer(tiny, [a0]):
            only0 = tiny.hf(tokens).logits
        with steer(tiny, [a0, a1]):
            both = tiny.hf(tokens).logits
    assert not torch.allclose(only0, both, atol=1e-4)


def test_front_uses_each_rows_first_real_tokens_under_left_padding(tiny: SteerableModel) -> None:
    vec = _vec(tiny)
    add = [Addition(vec, 2.0)]
    ids, mask = tiny.left_padded(["I", PROMPT])
    pos = (mask.cumsum(1) - 1).masked_fill(mask == 0, -1)
    with torch.no_grad(), steer(tiny, add) as step:
        step.set(pos, prompt_pass=True)
        padded = tiny.hf(ids, attention_mask=mask, position_ids=pos.clamp(min=0)).logits
    for row, text in enumerate(["I", PROMPT]):
        single = torch.tensor([tiny.encode(text)])
        with torch.no_grad(), steer(tiny, add):
            alone = tiny.hf(single).logits
        n = single.shape[1]
        assert torch.allclose(padded[row, -n:], alone[0], atol=1e-4)


def test_k_candidates_in_one_batch_match_single_passes(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode(PROMPT)])
    cands = [
        [Addition(_vec(tiny, seed=k), float(k + 1), positions=Positions.parse("all" if k % 2 else "front"))]
        for k in range(4)
    ]
    with torch.no_grad():
        with steer(tiny, cands):
            batched = tiny.hf(tokens.expand(4, -1)).logits
        for k, cand in enumerate(cands):
            with steer(tiny, cand):
                single = tiny.hf(tokens).logits
            assert torch.allclose(batched[k], single[0], atol=1e-4)


def test_row_count_mismatch_is_an_error(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode(PROMPT)]).expand(3, -1)
    cands = [[Addition(_vec(tiny, seed=k), 1.0)] for k in range(2)]
    with pytest.raises(ValueError, match="2 rows"), torch.no_grad(), steer(tiny, cands):
        tiny.hf(tokens)


def test_front_not_added_on_cached_decode_steps(tiny: SteerableModel) -> None:
    vec = _vec(tiny)
    ids = torch.tensor([tiny.encode(PROMPT)])
    with torch.no_grad(), steer(tiny, [Addition(vec, 2.0)]):
        out = tiny.hf(ids, use_cache=True)
        step_in = []
        h = tiny.blocks[1].register_forward_hook(
            lambda m, a, kw, o: step_in.append((a[0] if a else kw["hidden_states"]).clone()), with_kwargs=True
        )
        try:
            tiny.hf(torch.tensor([[5]]), past_key_values=out.past_key_values, use_cache=True)
        finally:
            h.remove()
    with torch.no_grad():
        out2 = tiny.hf(ids, use_cache=True)
        clean_in = _resid_in(tiny, torch.tensor([[5]]), 1, past_key_values=out2.past_key_values, use_cache=True)
    assert torch.allclose(step_in[0], clean_in, atol=1e-5)


def test_gradients_flow_to_a_parameter_vector(tiny: SteerableModel) -> None:
    param = torch.nn.Parameter(torch.zeros(1, tiny.d_model))
    vec = SteeringVector(param, layer=1)
    tokens = torch.tensor([tiny.encode(PROMPT)])
    with steer(tiny, [Addition(vec, 1.0, positions=Positions.parse("all"))]):
        loss = tiny.hf(tokens, labels=tokens).loss
    loss.backward()
    assert param.grad is not None and param.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.hf.parameters())
