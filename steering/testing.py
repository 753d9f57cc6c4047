"""Test doubles for the model layer: a tiny random GPT-2 with a real byte-level BPE tokenizer, in memory.

Downloads nothing and builds in well under a second, so unit tests of every layer can use it.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from steering.model import SteerableModel, load_model

_TEXT = [
    "I went up to my friend and said that the wedding was lovely.",
    "The bride and the groom danced at the reception.",
    "I talk about weddings constantly. I do not talk about food.",
    "She hates the rain, but she loves the calm sea at night.",
    "The team won the match and the crowd shouted with joy.",
]

SPECIAL = "<|endoftext|>"


def tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; the special token is last in the vocabulary; " " is one token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_TEXT * 4, trainer)
    tok.add_special_tokens([SPECIAL])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, unk_token=SPECIAL, pad_token=SPECIAL
    )


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
