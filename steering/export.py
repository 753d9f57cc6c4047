"""A steering written for use outside steersearch: a llama.cpp control vector (GGUF), or the project's own
vector files with the settings they were applied with.

llama.cpp's control vectors, as its source has them (read, not guessed):
- ``common/common.cpp`` ``common_control_vector_load_one``: a tensor ``direction.N`` (float32, 1-D, n_embd)
  is multiplied by the scale it is loaded with (``--control-vector FILE``: 1, ``--control-vector-scaled FILE
  S``: S) and summed into the slot of layer N; ``N = 0`` is rejected (the whole file is skipped), and the file's
  metadata is not read at all;
- ``src/llama-adapter.cpp``: slots exist for layers ``1 .. n_layer - 1``;
- every model graph (``src/models/llama.cpp``, ``gemma3.cpp``) ends block ``il`` with ``build_cvec(cur, il)``:
  the direction is added to the output of block ``il`` (0-based), at every position of the batch, prompt and
  generated tokens alike.

steersearch adds to ``blocks.{L}.hook_resid_pre``, the input of block L, which is the output of block L - 1.
So an addition at layer L is ``direction.{L-1}``, and layers 0 (the embeddings) and 1 (``direction.0``) cannot
be expressed. Only additions at every position map exactly (``all``, or ``from:0``, the same thing); ``front``
(ActAdd: the prompt's first tokens, on the prompt pass only) and ``from:K`` with K > 0 (BOS and the first
tokens left alone) have no llama.cpp equivalent and are refused, not approximated.

The file holds what is added: ``coeff * mask * vector`` summed over positions (the frac mask and the
coefficient baked in), so llama.cpp at scale 1 applies the trial as found. Several additions at one layer are
summed. The layout is the one repeng's ``ControlVector.export_gguf`` writes: ``general.architecture =
"controlvector"``, ``controlvector.model_hint`` (the model family), ``controlvector.layer_count`` (the number of
direction tensors), tensors ``direction.N``; steersearch adds its provenance under ``steersearch.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch
from torch import Tensor

from steering.atomic import atomic_write
from steering.intervention import Addition, PositionMode, Steering
from steering.model import SteerableModel
from steering.vector import SteeringVector

ARCH = "controlvector"
MODEL_HINT = f"{ARCH}.model_hint"
LAYER_COUNT = f"{ARCH}.layer_count"
FIRST_LAYER = 2
"""The lowest resid_pre layer llama.cpp can steer: it is ``direction.1``, the output of block 1."""

_LLAMA_CPP_ARCH = {"gemma3_text": "gemma3"}
"""HF ``model_type`` values whose llama.cpp architecture name differs (a text-only Gemma 3 is ``gemma3``)."""


class ExportError(ValueError):
    """A steering llama.cpp cannot apply as steersearch did; the message says what and why."""


def control_directions(steering: Steering, n_layers: int) -> dict[int, Tensor]:
    """llama.cpp layer index -> ``[d_model]`` float32 direction: what ``steering`` adds after that block.

    Raises:
        ExportError: an addition at front positions or ``from:K`` (K > 0), or at layer 0 or 1.

    Example:
        >>> control_directions([Addition(vec, coeff=4.0, positions=Positions.parse("all"))], 30)
        {14: tensor([...])}                                          # vec.layer == 15
    """
    directions: dict[int, Tensor] = {}
    for add in steering:
        _check_maps(add, n_layers)
        delta = add.delta()[0].detach().float().cpu()  # [d_model]: coeff * mask * summed vector
        index = add.layer - 1
        directions[index] = directions[index] + delta if index in directions else delta
    return dict(sorted(directions.items()))


def _check_maps(add: Addition, n_layers: int) -> None:
    pos = add.positions
    if pos.mode is PositionMode.FRONT:
        raise ExportError(
            f"layer {add.layer} addition at positions 'front' (added to the prompt's first {add.vector.n_pos} tokens "
            "on the prompt pass only) has no llama.cpp equivalent: llama.cpp adds a control vector at every position"
        )
    if pos.mode is PositionMode.FROM and pos.start > 0:
        raise ExportError(
            f"layer {add.layer} addition at positions '{pos}' (tokens {pos.start} on, BOS left alone) has no llama.cpp "
            "equivalent: llama.cpp adds a control vector at every position, BOS included"
        )
    if not FIRST_LAYER <= add.layer < n_layers:
        raise ExportError(
            f"layer {add.layer} has no llama.cpp control-vector slot: resid_pre of layer L is direction.(L-1), and "
            f"llama.cpp has neither direction.0 (it rejects the file) nor a slot before block 0; layers "
            f"{FIRST_LAYER}..{n_layers - 1} map"
        )


def model_hint(model: SteerableModel) -> str:
    """The model family for ``controlvector.model_hint``: llama.cpp's architecture name where it differs from
    the HF ``model_type`` (``llama`` for SmolLM2, ``gemma3`` for Gemma 3, ``gpt2`` for the embedded model)."""
    model_type = str(getattr(model.hf.config, "model_type", "") or "unknown")
    return _LLAMA_CPP_ARCH.get(model_type, model_type)


def write_control_vector(
    path: str | Path,
    directions: Mapping[int, Tensor],
    *,
    hint: str,
    metadata: Mapping[str, str | int | float] | None = None,
) -> None:
    """Write ``directions`` (llama.cpp layer index -> ``[d_model]``) as a control-vector GGUF, atomically.

    ``metadata`` goes to string, uint32 or float32 keys as given (llama.cpp ignores them; they are for people).
    """
    if not directions:
        raise ExportError("nothing to export: the steering has no addition")
    if any(n < 1 for n in directions):
        raise ExportError(f"direction indices must be >= 1 (llama.cpp rejects direction.0), got {sorted(directions)}")
    arrays = {n: np.ascontiguousarray(d.detach().cpu().numpy(), dtype=np.float32) for n, d in directions.items()}
    if len({a.shape for a in arrays.values()}) != 1 or next(iter(arrays.values())).ndim != 1:
        raise ExportError(f"directions must all be 1-D of one length, got {sorted({a.shape for a in arrays.values()})}")

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(MODEL_HINT, hint)
        writer.add_uint32(LAYER_COUNT, len(arrays))
        for key, value in (metadata or {}).items():
            if isinstance(value, str):
                writer.add_string(key, value)
            elif isinstance(value, int) and value >= 0:
                writer.add_uint32(key, value)
            else:
                writer.add_float32(key, float(value))
        for n in sorted(arrays):
            writer.add_tensor(f"direction.{n}", arrays[n])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(path, write)


def applied_vector(add: Addition, **provenance: object) -> SteeringVector:
    """``add``'s vector with how it was applied in its metadata (``coeff``, ``frac``, ``mask``, ``mask_seed``,
    ``positions``, plus ``provenance``), as ``SteeringVector.save`` writes it and ``generate --vector`` reads it."""
    meta = {
        **add.vector.metadata,
        **provenance,
        "coeff": add.coeff,
        "frac": add.frac,
        "mask": add.mask.value,
        "mask_seed": add.mask_seed,
        "positions": str(add.positions),
    }
    return SteeringVector(add.vector.activations.detach().to(torch.float32).cpu(), add.vector.layer, meta)
