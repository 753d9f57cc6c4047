"""Regression test for the TransformerBridge KV-cache bug (see steering/_kv_shim.py and ARCHITECTURE.md).

Cached generation, unsteered and steered, on the bridge and on our fast path, must equal an uncached HF
greedy loop on the same weights.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

from steering import Addition, GenerationConfig, SteeringVector, steer
from steering.generate import decode_loop
from steering.model import SteerableModel
from steering.testing import tiny_llama
from tests.reference import uncached_greedy

PROMPT = "I went up to my friend and said"
N_NEW = 12
GREEDY = GenerationConfig(max_new_tokens=N_NEW, n=1, temperature=0.0, freq_penalty=0.0)


def _bridge_cached_greedy(model: SteerableModel, ids: list[int]) -> list[int]:
    out = model.bridge.generate(
        torch.tensor([ids]),
        max_new_tokens=N_NEW,
        do_sample=False,
        use_past_kv_cache=True,
        stop_at_eos=False,
        verbose=False,
        return_type="tokens",
    )
    return out[0, len(ids) :].tolist()


def _vector(model: SteerableModel) -> SteeringVector:
    return SteeringVector.from_pair(model, "The bride and the groom", "I", layer=1)


def test_reference_is_context_sensitive(tiny: SteerableModel) -> None:
    # Guards the tests below: a model whose greedy output ignored its context could not reveal the bug.
    ids = tiny.encode(PROMPT)
    assert len(set(uncached_greedy(tiny, ids, N_NEW))) > 2


def test_cached_bridge_generation_equals_uncached_hf_loop(tiny: SteerableModel) -> None:
    ids = tiny.encode(PROMPT)
    assert _bridge_cached_greedy(tiny, ids) == uncached_greedy(tiny, ids, N_NEW)


def test_cached_steered_bridge_generation_equals_uncached_hf_loop(tiny: SteerableModel) -> None:
    ids, vec = tiny.encode(PROMPT), _vector(tiny)
    expected = uncached_greedy(tiny, ids, N_NEW, front=3.0 * vec.activations, layer=1)
    assert expected != uncached_greedy(tiny, ids, N_NEW)  # the steering changes the text
    with steer(tiny, [Addition(vec, 3.0)], on="bridge"):
        assert _bridge_cached_greedy(tiny, ids) == expected


@pytest.mark.parametrize("coeff", [0.0, 3.0])
def test_fast_path_generation_equals_uncached_hf_loop(tiny: SteerableModel, coeff: float) -> None:
    ids, vec = tiny.encode(PROMPT), _vector(tiny)
    expected = uncached_greedy(tiny, ids, N_NEW, front=coeff * vec.activations, layer=1)
    ids_t, mask = tiny.left_padded([PROMPT])
    got = decode_loop(tiny, ids_t, mask, [[Addition(vec, coeff)]], [0], GREEDY)
    assert got[0].tolist() == expected


def test_without_the_shim_the_bridge_cache_is_broken(tiny: SteerableModel, monkeypatch: pytest.MonkeyPatch) -> None:
    shimmed = AttentionBridge._update_kv_cache
    if not hasattr(shimmed, "__wrapped__"):
        pytest.skip("shim not installed: TransformerLens reads `cache` itself (upstream fix)")
    monkeypatch.setattr(AttentionBridge, "_update_kv_cache", shimmed.__wrapped__)
    ids = tiny.encode(PROMPT)
    assert _bridge_cached_greedy(tiny, ids) != uncached_greedy(tiny, ids, N_NEW)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_cached_bridge_generation_raises_no_past_key_values_deprecation(tiny: SteerableModel, family: str) -> None:
    """TransformerLens's generate passes the cache as ``past_key_values``; ``pass_cache_by_its_name`` renames it
    to ``cache`` (the model's own name), so the deprecation warning of every decode step is gone."""
    model = tiny if family == "gpt2" else tiny_llama()
    ids = model.encode(PROMPT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _bridge_cached_greedy(model, ids) == uncached_greedy(model, ids, N_NEW)  # still correct
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    # Around the hook (forward called directly) the model still warns: this version still has the old name
    # deprecated, so an upgrade that drops it is noticed here.
    cache = model.bridge.original_model(torch.tensor([ids]), use_cache=True).past_key_values
    with pytest.warns(FutureWarning, match="`past_key_values` is deprecated"):
        model.bridge.original_model.forward(torch.tensor([ids[-1:]]), past_key_values=cache, use_cache=True)
