"""Test doubles for the model layer: tiny random models with a real byte-level BPE tokenizer, in memory.

- ``tiny_model``: GPT-2 (learned absolute positions, LayerNorm);
- ``tiny_llama``: Llama, the SmolLM2 family (rotary positions, grouped KV heads, RMSNorm, tied embeddings);
- ``tiny_gemma3``: Gemma 3 (rotary positions, one KV head, a sliding window on all layers but the last,
  embedding scale inside ``embed_tokens``, q/k norms).

Each downloads nothing and builds in well under a second, so unit tests of every layer can use it.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from steering.model import SteerableModel, load_model

_TEXT = [
    "I went up to my friend and said that the wedding was lovely.",
    "The bride and the groom danced at the reception.",
    "I talk about weddings constantly. I do not talk about food.",
    "She hates the rain, but she loves the calm sea at night.",
    "The team won the match and the crowd shouted with joy.",
]

SPECIAL = "<|endoftext|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
)
"""A minimal chat template for ``tiny_tokenizer(chat_template=...)``: ``user: <prompt>\\nassistant:``."""


def tiny_tokenizer(vocab_size: int = 320, *, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; the special token is last in the vocabulary; " " is one token.

    The same vocabulary every time (trained on a fixed text), so a tokenizer with ``chat_template`` set fits
    any tiny model built here."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_TEXT * 4, trainer)
    tok.add_special_tokens([SPECIAL])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, unk_token=SPECIAL, pad_token=SPECIAL
    )
    fast.chat_template = chat_template
    return fast


def tiny_model(*, n_layer: int = 2, d_model: int = 32, n_head: int = 2, seed: int = 0) -> SteerableModel:
    """A randomly initialised GPT-2 of a few thousand parameters, wrapped as a ``SteerableModel``."""
    tok = tiny_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.3,  # large enough that outputs depend on context (KV-cache tests need it)
    )
    torch.manual_seed(seed)
    return load_model("tiny-random", hf_model=GPT2LMHeadModel(cfg), tokenizer=tok)


def tiny_llama(
    *, n_layer: int = 2, d_model: int = 32, n_head: int = 4, n_kv_head: int = 2, seed: int = 0
) -> SteerableModel:
    """A randomly initialised Llama (SmolLM2's family): rotary positions, ``n_kv_head`` grouped KV heads,
    tied embeddings; wrapped as a ``SteerableModel``."""
    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv_head,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=None,  # a padding_idx would zero the BOS embedding (BOS = pad in this tokenizer)
        attention_dropout=0.0,
        initializer_range=0.3,  # large enough that outputs depend on context
    )
    torch.manual_seed(seed)
    return load_model("tiny-llama", hf_model=LlamaForCausalLM(cfg), tokenizer=tok)


def tiny_gemma3(
    *,
    n_layer: int = 2,
    d_model: int = 32,
    n_head: int = 2,
    n_kv_head: int = 1,
    head_dim: int = 16,
    sliding_window: int = 8,
    seed: int = 0,
) -> SteerableModel:
    """A randomly initialised Gemma 3 text model: every layer but the last uses sliding-window attention
    (each query sees its last ``sliding_window`` tokens), the last is global, as in Gemma 3's 5:1 pattern;
    rotary positions (two bases), one KV head, q/k norms, and HF's ``sqrt(d_model)`` embedding scale.

    The weights depend on the sizes and ``seed`` only, so models differing only in ``sliding_window`` share
    their weights (a test can compare them to show the window matters).
    """
    tok = tiny_tokenizer()
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv_head,
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        sliding_window=sliding_window,
        layer_types=["sliding_attention"] * (n_layer - 1) + ["full_attention"],
        max_position_embeddings=128,
        # Untied, unlike the real Gemma 3: with tied weights the embedding (scaled by sqrt(d_model) inside
        # embed_tokens) swamps the blocks of a random model, which then just repeats its last token.
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=None,  # a padding_idx would zero the embedding of that token
        attention_dropout=0.0,
        initializer_range=0.3,  # large enough that outputs depend on context
    )
    torch.manual_seed(seed)
    return load_model("tiny-gemma3", hf_model=Gemma3ForCausalLM(cfg), tokenizer=tok)
