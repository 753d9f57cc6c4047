"""Llama- and Gemma-3-family correctness on tiny random models built in memory (steering/testing.py).

What GPT-2 cannot show: rotary positions (from the attention mask under left padding, carried across
cached decode steps), grouped KV heads, RMSNorm, Gemma 3's embedding scale and its sliding-window layers
(prompts and caches longer than the window). Each test runs on both families and must be able to fail:
steering must change the reference, and a broken cache or a padding leak must be caught.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

from steering import Addition, GenerationConfig, MaskMode, Positions, SteeringVector, generate, steer
from steering.fit import FitConfig, fit_vector
from steering.generate import decode_loop
from steering.intervention import PositionMode
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs, forward_logits
from steering.testing import tiny_gemma3, tiny_llama
from steering.vector import resid_pre
from tests.reference import uncached_greedy

WINDOW = 8  # tiny_gemma3's sliding window
BRIDE = "The bride"  # 6 tokens with BOS: inside the window (the cache crosses it while decoding)
SHORT = "I went up to my friend and said"  # 18 tokens
LONG = "I went up to my friend and said that the wedding was lovely. The bride and the groom danced"  # 42
N_NEW = 12
GREEDY = GenerationConfig(max_new_tokens=N_NEW, n=1, temperature=0.0, freq_penalty=0.0)
PROMOTE = [("I went up to my friend and said", " the bride and the groom danced"), ("The", " wedding was lovely")]


@pytest.fixture(scope="module")
def llama() -> SteerableModel:
    return tiny_llama()


@pytest.fixture(scope="module")
def gemma3() -> SteerableModel:
    return tiny_gemma3(sliding_window=WINDOW)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def fam(request: pytest.FixtureRequest) -> SteerableModel:
    """Each family in turn (module-scoped: built once; tests must not mutate it)."""
    model: SteerableModel = request.getfixturevalue(request.param)
    return model


def _pair(model: SteerableModel, layer: int = 1) -> SteeringVector:
    return SteeringVector.from_pair(model, "The bride and the groom", "I", layer=layer)


def _rand(model: SteerableModel, layer: int = 1, seed: int = 0, n_pos: int = 3) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    return SteeringVector.from_tensor(torch.randn(n_pos, model.d_model, generator=g), layer)


STEERINGS: dict[str, Callable[[SteerableModel], list[Addition]]] = {
    "none": lambda m: [],
    "front": lambda m: [Addition(_pair(m), 3.0)],  # ActAdd: a pair vector at the prompt's first positions
    "all": lambda m: [Addition(_pair(m), 0.5, positions=Positions.parse("all"))],
    "from:8": lambda m: [Addition(_pair(m), 0.5, positions=Positions.parse("from:8"))],  # starts mid-decode
    "front-frac-random": lambda m: [Addition(_pair(m), 3.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=1)],
}


def _reference(model: SteerableModel, text: str, adds: list[Addition]) -> list[int]:
    """The uncached HF loop under the same additions (all at one layer, at most one front and one tail)."""
    ids = model.encode(text)
    if not adds:
        return uncached_greedy(model, ids, N_NEW)
    assert len({a.layer for a in adds}) == 1 and len(adds) == 1
    add = adds[0]
    if add.positions.mode is PositionMode.FRONT:
        return uncached_greedy(model, ids, N_NEW, front=add.delta(), layer=add.layer)
    return uncached_greedy(model, ids, N_NEW, layer=add.layer, every=add.delta()[0], every_from=add.positions.start)


def _fast_path(model: SteerableModel, texts: list[str], adds: list[Addition]) -> list[list[int]]:
    ids, mask = model.left_padded(texts)
    out: list[list[int]] = decode_loop(model, ids, mask, [adds] * len(texts), [0] * len(texts), GREEDY).tolist()
    return out


def _bridge_cached(model: SteerableModel, text: str, adds: list[Addition]) -> list[int]:
    ids = model.encode(text)
    with steer(model, adds, on="bridge"):
        out = model.bridge.generate(
            torch.tensor([ids]),
            max_new_tokens=N_NEW,
            do_sample=False,
            use_past_kv_cache=True,
            stop_at_eos=False,
            verbose=False,
            return_type="tokens",
        )
    assert isinstance(out, torch.Tensor)
    result: list[int] = out[0, len(ids) :].tolist()
    return result


def _resid_in(model: SteerableModel, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """Input that block ``layer`` actually receives (after any steering pre-hook)."""
    box: list[torch.Tensor] = []

    def grab(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _out: Any) -> None:
        box.append(args[0] if args else kwargs["hidden_states"])

    h = model.blocks[layer].register_forward_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model.hf(tokens)
    finally:
        h.remove()
    return box[0]


# --- the models are what they claim to be -------------------------------------------------------------


def test_llama_has_grouped_kv_heads_rotary_and_tied_embeddings(llama: SteerableModel) -> None:
    cfg = llama.hf.config
    assert type(llama.blocks[0]).__name__ == "LlamaDecoderLayer"
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert llama.hf.lm_head.weight is llama.hf.model.embed_tokens.weight
    assert llama.bridge.cfg.positional_embedding_type == "rotary"


def test_gemma3_has_a_sliding_layer_and_scaled_embeddings(gemma3: SteerableModel) -> None:
    cfg = gemma3.hf.config
    assert type(gemma3.blocks[0]).__name__ == "Gemma3DecoderLayer"
    assert cfg.layer_types[0] == "sliding_attention" and cfg.sliding_window == WINDOW
    assert cfg.num_key_value_heads == 1 < cfg.num_attention_heads
    # Built from a config in memory: load_model filled in `architectures` so the bridge could pick its adapter.
    assert cfg.architectures == ["Gemma3ForCausalLM"]
    tokens = torch.tensor([gemma3.encode(BRIDE)])
    raw = torch.nn.functional.embedding(tokens, gemma3.hf.model.embed_tokens.weight)
    assert torch.allclose(resid_pre(gemma3, tokens, 0), raw * cfg.hidden_size**0.5, atol=1e-5)
    assert len(gemma3.encode(BRIDE)) < WINDOW < len(gemma3.encode(SHORT)) < len(gemma3.encode(LONG))


def test_the_sliding_window_changes_what_the_model_computes(gemma3: SteerableModel) -> None:
    """Same weights, window 128: equal logits inside the window, different beyond it."""
    wide = tiny_gemma3(sliding_window=128)
    assert all(torch.equal(a, b) for a, b in zip(wide.hf.parameters(), gemma3.hf.parameters(), strict=True))
    tokens = torch.tensor([gemma3.encode(LONG)])
    with torch.no_grad():
        narrow_logits, wide_logits = gemma3.hf(tokens).logits[0], wide.hf(tokens).logits[0]
    assert torch.allclose(narrow_logits[:WINDOW], wide_logits[:WINDOW], atol=1e-5)
    assert (narrow_logits[WINDOW:] - wide_logits[WINDOW:]).abs().amax(-1).min() > 1e-3
    ids = gemma3.encode(LONG)
    assert uncached_greedy(gemma3, ids, N_NEW) != uncached_greedy(wide, ids, N_NEW)


# --- (a) bridge and pristine HF agree --------------------------------------------------------------


@pytest.mark.parametrize("text", [BRIDE, LONG])
def test_bridge_logits_equal_pristine_hf(fam: SteerableModel, text: str) -> None:
    tokens = torch.tensor([fam.encode(text)])
    with torch.no_grad():
        assert torch.allclose(fam.bridge(tokens), fam.hf(tokens).logits, atol=1e-4)


def test_bridge_resid_pre_equals_hf_block_input(fam: SteerableModel) -> None:
    tokens = torch.tensor([fam.encode(LONG)])
    with torch.no_grad():
        _, cache = fam.bridge.run_with_cache(tokens, names_filter="blocks.1.hook_resid_pre")
    assert torch.allclose(cache["blocks.1.hook_resid_pre"], resid_pre(fam, tokens, 1), atol=1e-4)


@pytest.mark.parametrize("text", [BRIDE, LONG])
def test_bridge_and_hf_steering_agree(fam: SteerableModel, text: str) -> None:
    tokens = torch.tensor([fam.encode(text)])
    adds = [
        Addition(_pair(fam), 3.0),
        Addition(_rand(fam, layer=0, seed=1), -1.0, positions=Positions.parse("all")),
        Addition(_rand(fam, seed=2), 1.5, positions=Positions.parse("from:3"), frac=0.5, mask=MaskMode.RANDOM),
    ]
    with torch.no_grad():
        with steer(fam, adds, on="hf"):
            hf_logits = fam.hf(tokens).logits
        with steer(fam, adds, on="bridge"):
            bridge_logits = fam.bridge(tokens)
        plain = fam.hf(tokens).logits
    assert torch.allclose(hf_logits, bridge_logits, atol=1e-4)
    assert (hf_logits - plain).abs().max() > 1e-2


# --- (b) the KV-cache regression ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [BRIDE, SHORT, LONG])
def test_reference_is_context_sensitive_and_steerable(fam: SteerableModel, text: str) -> None:
    # Guards the tests below: output that ignored its context could not reveal a broken cache, and
    # steering that changed nothing could not reveal steering applied wrongly.
    plain = _reference(fam, text, [])
    assert len(set(plain)) > 2
    for kind, build in STEERINGS.items():
        if kind != "none":
            assert _reference(fam, text, build(fam)) != plain, kind


@pytest.mark.parametrize("kind", list(STEERINGS))
@pytest.mark.parametrize("text", [BRIDE, LONG])
def test_fast_path_cached_generation_equals_uncached_hf_loop(fam: SteerableModel, text: str, kind: str) -> None:
    adds = STEERINGS[kind](fam)
    assert _fast_path(fam, [text], adds)[0] == _reference(fam, text, adds)


@pytest.mark.parametrize("kind", ["none", "front", "all", "from:8"])
@pytest.mark.parametrize("text", [BRIDE, LONG])
def test_bridge_cached_generation_equals_uncached_hf_loop(fam: SteerableModel, text: str, kind: str) -> None:
    adds = STEERINGS[kind](fam)
    assert _bridge_cached(fam, text, adds) == _reference(fam, text, adds)


def test_generate_strings_equal_the_reference(fam: SteerableModel) -> None:
    adds = STEERINGS["front"](fam)
    got = generate(fam, [BRIDE, LONG], adds, GREEDY)
    eos = fam.tokenizer.eos_token_id
    for text, completions in zip([BRIDE, LONG], got, strict=True):
        ref = _reference(fam, text, adds)
        ref = ref[: ref.index(eos)] if eos in ref else ref
        assert completions == [fam.tokenizer.decode(ref, skip_special_tokens=True)]


def test_without_the_shim_the_bridge_cache_is_broken(fam: SteerableModel, monkeypatch: pytest.MonkeyPatch) -> None:
    shimmed = AttentionBridge._update_kv_cache
    if not hasattr(shimmed, "__wrapped__"):
        pytest.skip("shim not installed: TransformerLens reads `cache` itself (upstream fix)")
    monkeypatch.setattr(AttentionBridge, "_update_kv_cache", shimmed.__wrapped__)
    for text in (BRIDE, LONG):
        assert _bridge_cached(fam, text, []) != _reference(fam, text, [])


def _lose_history(model: SteerableModel, kwargs: dict[str, Any]) -> None:
    cache = kwargs.get(model.cache_kwarg)
    if cache is not None:  # a decode step: wipe what earlier steps cached (the bridge bug's effect)
        for layer in cache.layers:
            layer.keys.zero_()
            layer.values.zero_()


def _restart_positions(model: SteerableModel, kwargs: dict[str, Any]) -> None:
    if kwargs["input_ids"].shape[1] == 1:  # a decode step: rotary positions not carried over
        kwargs["position_ids"] = torch.zeros_like(kwargs["position_ids"])


@pytest.mark.parametrize("breakage", [_lose_history, _restart_positions], ids=["lost-history", "restarted-positions"])
def test_a_broken_fast_path_cache_would_be_caught(
    fam: SteerableModel, monkeypatch: pytest.MonkeyPatch, breakage: Callable[[SteerableModel, dict[str, Any]], None]
) -> None:
    expected = {text: _reference(fam, text, []) for text in (BRIDE, LONG)}
    assert all(_fast_path(fam, [text], [])[0] == ref for text, ref in expected.items())
    real = fam.hf.forward

    def broken(*args: Any, **kwargs: Any) -> Any:
        breakage(fam, kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fam.hf, "forward", broken)
    for text, ref in expected.items():
        assert _fast_path(fam, [text], [])[0] != ref


# --- (c) left-padded batches -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "front", "all", "from:8"])
def test_left_padded_batch_rows_equal_each_prompt_alone(fam: SteerableModel, kind: str) -> None:
    adds = STEERINGS[kind](fam)
    texts = [BRIDE, LONG, SHORT]
    batch = _fast_path(fam, texts, adds)
    for text, row in zip(texts, batch, strict=True):
        assert row == _reference(fam, text, adds), text


@pytest.mark.parametrize("kind", ["none", "front", "all"])
def test_left_padded_prompt_logits_equal_each_prompt_alone(fam: SteerableModel, kind: str) -> None:
    adds = STEERINGS[kind](fam)
    seqs = [fam.encode(t) for t in (BRIDE, LONG)]
    padded, mask = forward_logits(fam, seqs, [adds])
    for row, seq in enumerate(seqs):
        with torch.no_grad(), steer(fam, adds):
            alone = fam.hf(torch.tensor([seq])).logits[0]
        assert mask[row].sum() == len(seq)
        assert torch.allclose(padded[row, -len(seq) :], alone, atol=1e-4)


def test_a_padding_leak_would_be_caught(fam: SteerableModel) -> None:
    """The same batch with the padding visible (an all-ones mask) no longer matches the short prompt."""
    ids, mask = fam.left_padded([BRIDE, LONG])
    leaky = decode_loop(fam, ids, torch.ones_like(mask), [[], []], [0, 0], GREEDY)
    assert leaky[0].tolist() != _reference(fam, BRIDE, [])


# --- (d) frac masks and positions ---------------------------------------------------------------------


def test_frac_first_touches_first_dims_at_front_positions_only(fam: SteerableModel) -> None:
    vec = _rand(fam)
    add = Addition(vec, 2.0, frac=0.25)
    k = round(0.25 * fam.d_model)
    tokens = torch.tensor([fam.encode(LONG)])
    clean = _resid_in(fam, tokens, 1)
    with steer(fam, [add]):
        diff = (_resid_in(fam, tokens, 1) - clean)[0]
    assert torch.allclose(diff[:3, :k], 2.0 * vec.activations[:, :k], atol=1e-5)
    assert (diff[:3, :k] != 0).all()
    assert diff[:, k:].abs().max() == 0 and diff[3:].abs().max() == 0


def test_frac_random_touches_its_own_dims_only(fam: SteerableModel) -> None:
    vec = _rand(fam)
    add = Addition(vec, 2.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=3)
    dims = add.dim_mask().bool()
    assert dims.sum() == fam.d_model // 2 and not dims[: fam.d_model // 2].all()
    tokens = torch.tensor([fam.encode(LONG)])
    clean = _resid_in(fam, tokens, 1)
    with steer(fam, [add]):
        diff = (_resid_in(fam, tokens, 1) - clean)[0]
    assert torch.equal(diff[:3].abs().amax(0) > 0, dims)
    assert torch.allclose(diff[:3, dims], 2.0 * vec.activations[:, dims], atol=1e-5)
    assert diff[3:].abs().max() == 0


@pytest.mark.parametrize("start", [4, 10])  # inside and beyond Gemma 3's window
def test_positions_from_k_change_positions_k_on_only(fam: SteerableModel, start: int) -> None:
    vec = _rand(fam)
    add = Addition(vec, 1.0, positions=Positions.parse(f"from:{start}"))
    tokens = torch.tensor([fam.encode(LONG)])
    clean = _resid_in(fam, tokens, 1)
    with torch.no_grad():
        plain = fam.hf(tokens).logits[0]
        with steer(fam, [add]):
            diff = (_resid_in(fam, tokens, 1) - clean)[0]
            steered = fam.hf(tokens).logits[0]
    summed = vec.activations.sum(0)
    assert diff[:start].abs().max() == 0
    assert torch.allclose(diff[start:], summed.expand_as(diff[start:]), atol=1e-5)
    # Causal: logits before K are untouched; every position from K on changes.
    assert torch.allclose(steered[:start], plain[:start], atol=1e-6)
    assert (steered[start:] - plain[start:]).abs().amax(-1).min() > 1e-3


# --- (e) gradient fitting ----------------------------------------------------------------------------


def _mean_ll(model: SteerableModel, adds: list[Addition]) -> float:
    logp, n = continuation_logprobs(model, [p for p, _ in PROMOTE], [c for _, c in PROMOTE], [adds])
    return float(logp.sum() / n.sum())


def test_fit_vector_lowers_its_loss_and_leaves_the_model_alone(fam: SteerableModel) -> None:
    before = {k: v.clone() for k, v in fam.hf.state_dict().items()}
    fit = fit_vector(fam, 1, PROMOTE, config=FitConfig(lr=0.1, steps=10))
    assert fit.steps == 10 and fit.losses[-1] < fit.losses[0] - 0.3
    assert _mean_ll(fam, [fit.addition()]) > _mean_ll(fam, []) + 0.3
    assert all(p.grad is None and not p.requires_grad for p in fam.hf.parameters())
    after = fam.hf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
