"""Steering vectors: per-position residual-stream activations at one layer, with provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from steering.atomic import atomic_write, atomic_write_text
from steering.model import SteerableModel

DEFAULT_FILLER = " "


@dataclass(frozen=True)
class SteeringVector:
    """What ActAdd adds: ``activations[p]`` goes to prompt position ``p`` at the input of block ``layer``.

    Attributes:
        activations: ``[n_pos, d_model]``, float32, on CPU or the model's device.
        layer: residual stream layer (input of block ``layer``, i.e. ``blocks.{layer}.hook_resid_pre``).
        metadata: JSON-serialisable provenance (pair, model, filler, ...).
    """

    activations: Tensor
    layer: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.activations.ndim != 2:
            raise ValueError(f"activations must be [n_pos, d_model], got shape {tuple(self.activations.shape)}")
        if self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")
        if not bool(torch.isfinite(self.activations).all()):
            raise ValueError("steering vector has NaN or inf values")

    @property
    def n_pos(self) -> int:
        return int(self.activations.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.activations.shape[1])

    def summed(self) -> Tensor:
        """``[d_model]``: the difference summed over positions, used where one vector is added per position."""
        return self.activations.sum(dim=0)

    @classmethod
    def from_tensor(cls, tensor: Tensor, layer: int, **metadata: Any) -> SteeringVector:
        """Wrap a raw ``[d_model]`` or ``[n_pos, d_model]`` tensor (e.g. a fitted vector).

        Example:
            >>> SteeringVector.from_tensor(torch.randn(256), layer=2, source="fitted").n_pos
            1
        """
        t = tensor.detach().to(torch.float32)
        if t.ndim == 1:
            t = t[None, :]
        return cls(t, layer, {"kind": "tensor", **metadata})

    @classmethod
    def from_pair(
        cls, model: SteerableModel, prompt_a: str, prompt_b: str, layer: int, *, filler: str = DEFAULT_FILLER
    ) -> SteeringVector:
        """ActAdd: ``act_L(prompt_a) - act_L(prompt_b)`` per position.

        Both prompts get BOS prepended; the shorter is right-padded with ``filler`` (ActAdd used a space),
        which must be a single token.

        Example:
            >>> v = SteeringVector.from_pair(model, "Love", "Hate", layer=2)
        """
        model.check_layer(layer)
        toks = PairTokens.encode(model, prompt_a, prompt_b, filler=filler)
        acts = resid_pre(model, toks.padded(model.bos_token_id), layer)  # [2, width, d_model]
        meta = {
            "kind": "pair",
            "prompt_a": prompt_a,
            "prompt_b": prompt_b,
            "filler": filler,
            "model": model.name,
        }
        return cls((acts[0] - acts[1]).float().cpu(), layer, meta)

    def save(self, path: str | Path) -> None:
        """Write ``path.safetensors`` and ``path.json`` (the suffix of ``path`` is ignored)."""
        base = Path(path).with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        # Each file goes to a temporary name and is renamed; the tensors come last, so a reader that finds
        # the .safetensors file also finds its metadata (a crash never leaves half a vector).
        meta = {"layer": self.layer, "metadata": self.metadata}
        atomic_write_text(base.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))
        tensors = {"activations": self.activations.contiguous().cpu()}
        atomic_write(base.with_suffix(".safetensors"), lambda tmp: save_file(tensors, str(tmp)))

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Read a vector written by ``save``. Every error (a missing, truncated or corrupt file, metadata that
        is not ``{"layer": int, "metadata": {...}}``, NaN or inf values) is one line naming the file."""
        base = Path(path).with_suffix("")
        tensors_file, meta_file = base.with_suffix(".safetensors"), base.with_suffix(".json")
        for f in (tensors_file, meta_file):
            if not f.is_file():
                raise FileNotFoundError(f"steering vector file {f} does not exist")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"steering vector metadata {meta_file} is not valid JSON: {err}") from err
        if not (isinstance(meta, dict) and type(meta.get("layer")) is int and isinstance(meta.get("metadata"), dict)):
            raise ValueError(f'steering vector metadata {meta_file}: expected {{"layer": <int>, "metadata": {{...}}}}')
        try:
            tensors = load_file(str(tensors_file))
        except (SafetensorError, OSError) as err:  # truncated or corrupt
            raise ValueError(f"steering vector file {tensors_file} is not a valid safetensors file: {err}") from err
        if "activations" not in tensors or not tensors["activations"].is_floating_point():
            raise ValueError(f"steering vector file {tensors_file} has no float 'activations' tensor")
        try:
            return cls(tensors["activations"], meta["layer"], dict(meta["metadata"]))
        except ValueError as err:  # wrong shape, negative layer, NaN or inf
            raise ValueError(f"steering vector file {tensors_file}: {err}") from err


@dataclass(frozen=True)
class PairTokens:
    """A prompt pair as token ids (no BOS): what ActAdd feeds the model, and what token search mutates.

    ``padded`` gives both rows as BOS + tokens, the shorter right-padded with the ``filler`` token.
    """

    a: tuple[int, ...]
    b: tuple[int, ...]
    filler: int

    def __post_init__(self) -> None:
        if not self.a and not self.b:
            raise ValueError("a steering pair needs at least one non-empty prompt")

    @classmethod
    def encode(cls, model: SteerableModel, prompt_a: str, prompt_b: str, *, filler: str = DEFAULT_FILLER) -> PairTokens:
        return cls(tuple(model.encode(prompt_a)[1:]), tuple(model.encode(prompt_b)[1:]), model.single_token_id(filler))

    @property
    def width(self) -> int:
        """Positions of the vector: BOS plus the longer side."""
        return 1 + max(len(self.a), len(self.b))

    def padded(self, bos: int) -> Tensor:
        """``[2, width]`` long: row 0 is side a, row 1 side b."""
        w = self.width - 1
        rows = [[bos, *s, *([self.filler] * (w - len(s)))] for s in (self.a, self.b)]
        return torch.tensor(rows)

    def decode(self, tokenizer: Any) -> tuple[str, str]:
        return tokenizer.decode(list(self.a)), tokenizer.decode(list(self.b))


class _Captured(Exception):
    pass


@torch.no_grad()
def resid_pre(model: SteerableModel, tokens: Tensor, layer: int, *, chunk: int | None = None) -> Tensor:
    """Input of block ``layer`` for ``tokens [B, T]`` (equals the bridge's ``blocks.{layer}.hook_resid_pre``).

    Stops the forward pass at that block, so later layers cost nothing. ``chunk``: at most this many rows
    per pass (for large batches of candidates).
    """
    step = chunk or max(1, len(tokens))
    return torch.cat(
        [resid_at(model, layer, input_ids=tokens[i : i + step].to(model.device)) for i in range(0, len(tokens), step)]
    )


def resid_at(model: SteerableModel, layer: int, **inputs: Tensor) -> Tensor:
    """``resid_pre`` for ``input_ids`` or ``inputs_embeds`` (differentiable: no ``no_grad`` here)."""
    model.check_layer(layer)
    box: list[Tensor] = []

    def grab(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        box.append(args[0] if args else kwargs["hidden_states"])
        raise _Captured

    handle = model.blocks[layer].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model.hf(**inputs, use_cache=False)
    except _Captured:
        pass
    finally:
        handle.remove()
    return box[0]
