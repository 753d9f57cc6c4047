"""Model-level settings (``steering/model.py``): which token starts a sequence, whether one is prepended, the
filler of left-padded batches, and the chat prompt format; on tiny Llama and Gemma 3 models built in memory.

Each check is shown able to fail: the setting must change what the model sees, or (the padding filler)
would change the outputs if the attention mask did not hide it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from search.config import ExperimentConfig, ModelSpec
from search.session import load_experiment_model
from steering import Addition, GenerationConfig, SteeringVector, generate
from steering.generate import decode_loop
from steering.model import ModelLoadError, SteerableModel
from steering.scoring import continuation_logprobs, forward_logits, tokenize_continuations
from steering.testing import CHAT_TEMPLATE, tiny_gemma3, tiny_llama, tiny_tokenizer
from tests.reference import uncached_greedy

N_NEW = 8
GREEDY = GenerationConfig(max_new_tokens=N_NEW, n=1, temperature=0.0, freq_penalty=0.0)
SAMPLED = GenerationConfig(max_new_tokens=N_NEW, n=2, seed=3)
PROMPTS = ["The bride", "I went up to my friend and said"]  # different lengths: the batch is left-padded


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def fam(request: pytest.FixtureRequest) -> SteerableModel:
    """Each family in turn (module-scoped; tests derive variants with ``with_settings``, never mutate it)."""
    return tiny_llama() if request.param == "llama" else tiny_gemma3()


def _greedy(model: SteerableModel, text: str, adds: list[Addition] | None = None) -> list[int]:
    ids, mask = model.left_padded([text])
    out: list[int] = decode_loop(model, ids, mask, [adds or []], [0], GREEDY)[0].tolist()
    return out


def _text_ids(model: SteerableModel, text: str) -> list[int]:
    return list(model.tokenizer.encode(text, add_special_tokens=False))


def _other_token(model: SteerableModel) -> tuple[str, int]:
    """A vocabulary entry that is neither BOS nor EOS, to use as a setting."""
    token = "Ġthe"
    ident = model.tokenizer.get_vocab()[token]
    assert ident not in (model.bos_token_id, model.tokenizer.eos_token_id)
    return token, int(ident)


# --- bos_token -----------------------------------------------------------------------------------------


def test_bos_override_starts_prompts_pairs_and_generation(fam: SteerableModel) -> None:
    token, ident = _other_token(fam)
    moved = fam.with_settings(bos_token=token)
    assert moved.bos_token_id == ident and fam.bos_token_id != ident
    assert moved.encode_prompt("The bride")[0] == moved.encode_text("The bride")[0] == moved.encode("x")[0] == ident
    # Generation sees the new BOS: it equals the uncached HF loop on [new BOS] + text, and differs from the
    # default BOS (so the check can fail).
    want = uncached_greedy(fam, [ident, *_text_ids(fam, "The bride")], N_NEW)
    assert _greedy(moved, "The bride") == want
    assert _greedy(fam, "The bride") != want
    # Pair vectors use it too: position 0 of both rows is the new BOS.
    a = SteeringVector.from_pair(moved, "The bride", "I", layer=1).activations
    b = SteeringVector.from_pair(fam, "The bride", "I", layer=1).activations
    assert not torch.allclose(a, b)


def test_bos_token_may_be_given_as_text_of_one_token(fam: SteerableModel) -> None:
    _, ident = _other_token(fam)
    assert fam.with_settings(bos_token=" the").bos_token_id == ident


@pytest.mark.parametrize("setting", ["bos_token", "pad_token"])
def test_unknown_token_names_are_clear_errors(fam: SteerableModel, setting: str) -> None:
    message = rf"{setting} '<\|nope\|>' is not a token of this tokenizer.*<\|endoftext\|>"
    with pytest.raises(ModelLoadError, match=message):
        fam.with_settings(bos_token="<|nope|>") if setting == "bos_token" else fam.with_settings(pad_token="<|nope|>")


def test_unknown_prompt_format_is_a_clear_error(fam: SteerableModel) -> None:
    with pytest.raises(ModelLoadError, match="prompt_format must be one of plain, chat, got 'xml'"):
        fam.with_settings(prompt_format="xml")


# --- prepend_bos ---------------------------------------------------------------------------------------


def test_prepend_bos_false_feeds_the_text_alone(fam: SteerableModel) -> None:
    bare = fam.with_settings(prepend_bos=False)
    text = _text_ids(fam, "The bride")
    assert bare.encode_prompt("The bride") == bare.encode_text("The bride") == text
    assert bare.encode("The bride") == [fam.bos_token_id, *text]  # pairs keep BOS (the ActAdd convention)
    want = uncached_greedy(fam, text, N_NEW)
    assert _greedy(bare, "The bride") == want
    assert _greedy(fam, "The bride") != want


def test_prepend_bos_false_steers_the_same_tokens(fam: SteerableModel) -> None:
    """Without BOS, vector row p (row 0 is BOS's, zero for a pair) still meets the prompt's p-th text token."""
    bare = fam.with_settings(prepend_bos=False)
    g = torch.Generator().manual_seed(0)
    vec = SteeringVector.from_tensor(torch.randn(3, fam.d_model, generator=g), layer=1)
    add = Addition(vec, 2.0)
    text = _text_ids(fam, "The bride")
    want = uncached_greedy(fam, text, N_NEW, front=add.delta()[1:], layer=1)
    assert _greedy(bare, "The bride", [add]) == want
    assert uncached_greedy(fam, text, N_NEW, front=add.delta(), layer=1) != want  # the offset matters


def test_prepend_bos_false_scores_text_from_its_second_token(fam: SteerableModel) -> None:
    bare = fam.with_settings(prepend_bos=False)
    seqs, n_tail = tokenize_continuations(bare, ["", "The"], [" the bride", " bride"])
    assert seqs[0] == _text_ids(fam, " the bride") and n_tail[0] == len(seqs[0]) - 1  # nothing predicts token 0
    assert n_tail[1] == len(_text_ids(fam, " bride"))
    logp, n = continuation_logprobs(bare, ["", "The"], [" the bride", " bride"], [[]])
    assert torch.isfinite(logp).all() and n.tolist() == n_tail


# --- pad_token -----------------------------------------------------------------------------------------


def test_pad_filler_is_masked_and_changes_nothing(fam: SteerableModel) -> None:
    token, ident = _other_token(fam)
    padded = fam.with_settings(pad_token=token)
    assert padded.pad_token_id == ident and fam.pad_token_id == fam.bos_token_id
    ids, mask = padded.left_padded(PROMPTS)
    assert ids[0, 0] == ident and not mask[0, 0]
    seqs = [fam.encode_prompt(p) for p in PROMPTS]
    adds = [Addition(SteeringVector.from_pair(fam, "The bride", "I", layer=1), 2.0)]
    a, mask_a = forward_logits(fam, seqs, [adds])
    b, _ = forward_logits(padded, seqs, [adds])
    real = mask_a.bool()
    assert torch.allclose(a[real], b[real], atol=1e-5)
    assert generate(padded, PROMPTS, adds, SAMPLED) == generate(fam, PROMPTS, adds, SAMPLED)
    # The filler would matter if the mask did not hide it.
    ids_a, _ = fam.pad_left(seqs)
    ids_b, _ = padded.pad_left(seqs)
    with torch.no_grad():
        assert not torch.allclose(fam.hf(ids_a).logits[0, -1], fam.hf(ids_b).logits[0, -1], atol=1e-3)


# --- prompt_format: chat -------------------------------------------------------------------------------


def _chat(model: SteerableModel, template: str = CHAT_TEMPLATE) -> SteerableModel:
    with_template = dataclasses.replace(model, tokenizer=tiny_tokenizer(chat_template=template))  # same vocabulary
    return with_template.with_settings(prompt_format="chat")


def test_chat_format_wraps_prompts_in_the_template(fam: SteerableModel) -> None:
    chat = _chat(fam)
    wrapped = "user: The bride\nassistant:"
    assert chat.encode_prompt("The bride") == [fam.bos_token_id, *_text_ids(fam, wrapped)]
    by_hand = [f"user: {p}\nassistant:" for p in PROMPTS]
    assert generate(chat, PROMPTS, [], SAMPLED) == generate(fam, by_hand, [], SAMPLED)
    assert generate(chat, PROMPTS, [], SAMPLED) != generate(fam, PROMPTS, [], SAMPLED)
    # A scored continuation follows the wrapped prompt (the answer), a text scored on its own stays plain.
    seqs, _ = tokenize_continuations(chat, ["The bride", ""], [" danced", "The bride"])
    assert seqs[0] == chat.encode_prompt("The bride") + _text_ids(fam, " danced")
    assert seqs[1] == fam.encode_text("The bride") == chat.encode_text("The bride")


def test_chat_format_leaves_pair_vectors_plain(fam: SteerableModel) -> None:
    chat = _chat(fam)
    a = SteeringVector.from_pair(chat, "The bride", "I", layer=1).activations
    assert torch.equal(a, SteeringVector.from_pair(fam, "The bride", "I", layer=1).activations)


def test_chat_template_that_starts_with_bos_gets_it_once(fam: SteerableModel) -> None:
    chat = _chat(fam, "{{ bos_token }}" + CHAT_TEMPLATE)
    assert chat.encode_prompt("The bride") == [fam.bos_token_id, *_text_ids(fam, "user: The bride\nassistant:")]


def test_chat_without_a_template_is_a_clear_error(fam: SteerableModel) -> None:
    with pytest.raises(ModelLoadError, match="prompt_format 'chat': the tokenizer of model .* has no chat template"):
        fam.with_settings(prompt_format="chat")


# --- from the config -----------------------------------------------------------------------------------


def test_experiment_config_settings_reach_the_model(tmp_path: Path) -> None:
    model = tiny_llama()
    model.hf.save_pretrained(tmp_path)
    tiny_tokenizer(chat_template=CHAT_TEMPLATE).save_pretrained(tmp_path)
    spec = ModelSpec(source=str(tmp_path), bos_token=" the", prepend_bos=False, pad_token=" the", prompt_format="chat")
    loaded = load_experiment_model(ExperimentConfig(name="t", model=spec))
    ident = loaded.tokenizer.get_vocab()["Ġthe"]
    assert (loaded.bos_token_id, loaded.prepend_bos, loaded.pad_token_id, loaded.prompt_format) == (
        ident,
        False,
        ident,
        "chat",
    )
    assert loaded.encode_prompt("The bride") == _text_ids(loaded, "user: The bride\nassistant:")
    default = load_experiment_model(ExperimentConfig(name="t", model=ModelSpec(source=str(tmp_path))))
    assert (default.bos_token_id, default.prepend_bos, default.prompt_format) == (model.bos_token_id, True, "plain")
