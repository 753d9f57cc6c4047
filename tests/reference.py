"""Independent reference implementations the tests compare the library against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from steering.model import SteerableModel


@torch.no_grad()
def uncached_greedy(
    model: SteerableModel, ids: list[int], n_new: int, front: Tensor | None = None, layer: int = 0
) -> list[int]:
    """Greedy decoding with no KV cache on the plain HF module; ``front [P, d]`` is added to the input of
    block ``layer`` at the prompt's positions 0..min(P, len(ids))-1 on every (full) forward pass, the ActAdd
    definition: generated tokens never receive an addition, even when the vector is longer than the prompt."""
    if front is not None:
        front = front[: len(ids)]

    def add_front(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        h = h.clone()
        h[:, : front.shape[0]] += front
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    handle = model.blocks[layer].register_forward_pre_hook(add_front, with_kwargs=True) if front is not None else None
    try:
        seq = list(ids)
        for _ in range(n_new):
            logits = model.hf(torch.tensor([seq]), use_cache=False).logits
            seq.append(int(logits[0, -1].argmax()))
    finally:
        if handle is not None:
            handle.remove()
    return seq[len(ids) :]
