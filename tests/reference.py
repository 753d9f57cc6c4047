"""Independent reference implementations the tests compare the library against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from steering.model import SteerableModel


@torch.no_grad()
def uncached_greedy(
    model: SteerableModel,
    ids: list[int],
    n_new: int,
    front: Tensor | None = None,
    layer: int = 0,
    *,
    every: Tensor | None = None,
    every_from: int = 0,
) -> list[int]:
    """Greedy decoding with no KV cache on the plain HF module: every step is a full forward pass of the
    whole sequence (one row, no padding), so positions are HF's defaults 0..n-1 (rotary models included)
    and a sliding window is HF's own full-sequence mask.

    Additions to the input of block ``layer`` on every (full) forward pass:
    - ``front [P, d]`` at the prompt's positions 0..min(P, len(ids))-1, the ActAdd definition: generated
      tokens never receive it, even when the vector is longer than the prompt;
    - ``every [d]`` at every position >= ``every_from``, generated tokens included (``all`` / ``from:K``).
    """
    if front is not None:
        front = front[: len(ids)]

    def add(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        h = h.clone()
        if front is not None:
            h[:, : front.shape[0]] += front
        if every is not None:
            h[:, every_from:] += every
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    steered = front is not None or every is not None
    handle = model.blocks[layer].register_forward_pre_hook(add, with_kwargs=True) if steered else None
    try:
        seq = list(ids)
        for _ in range(n_new):
            logits = model.hf(torch.tensor([seq]), use_cache=False).logits
            seq.append(int(logits[0, -1].argmax()))
    finally:
        if handle is not None:
            handle.remove()
    return seq[len(ids) :]
