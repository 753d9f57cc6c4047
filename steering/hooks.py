"""Hooks that apply steering, living only inside a context manager that always removes them.

Two attachment points share one ``apply_plan``:
- ``on="hf"``: forward pre-hooks on the HF decoder blocks of ``SteerableModel.hf`` (the fast path used by
  generation and scoring);
- ``on="bridge"``: TransformerLens hooks on ``blocks.{L}.hook_resid_pre`` of ``SteerableModel.bridge``
  (``run_with_hooks``/``generate`` on the bridge, caching, interpretability work).

Positions: a caller that knows them (the generation loop, left-padded batches) calls
``StepPositions.set`` before each forward. Otherwise they are inferred per layer: a pass with more than one
token is a prompt pass starting at position 0; a one-token pass after it is the next cached decode step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from steering.intervention import LayerPlan, Steering, apply_plan, compile_plans
from steering.model import SteerableModel

ResidHook = Callable[[Tensor], Tensor]


class StepPositions:
    """Explicit positions for the next forward pass (see module docstring)."""

    def __init__(self) -> None:
        self.rel: Tensor | None = None
        self.prompt_pass = True

    def set(self, rel: Tensor, *, prompt_pass: bool) -> None:
        """``rel [B, T]``: token index from each row's first real token (< 0 for left padding)."""
        self.rel = rel
        self.prompt_pass = prompt_pass


def make_resid_hook(plan: LayerPlan, positions: StepPositions) -> ResidHook:
    """A function ``resid [B, T, d] -> resid`` applying ``plan`` at the right positions."""
    seen = 0  # tokens this layer has processed so far, for inferred positions

    def hook(resid: Tensor) -> Tensor:
        nonlocal seen
        if positions.rel is not None:
            return apply_plan(plan, resid, positions.rel, positions.prompt_pass)
        batch, seq, _ = resid.shape
        prompt_pass = seq > 1 or seen == 0
        start = 0 if prompt_pass else seen
        seen = start + seq
        rel = torch.arange(start, start + seq, device=resid.device).expand(batch, seq)
        return apply_plan(plan, resid, rel, prompt_pass)

    return hook


@contextmanager
def steer(model: SteerableModel, rows: Steering | Sequence[Steering], *, on: str = "hf") -> Iterator[StepPositions]:
    """Apply steering inside a ``with`` block; hooks are removed on exit, also when the body raises.

    Args:
        model: the model to steer.
        rows: a list of additions applied to every row, or a list of such lists, one per batch row
            (row i gets candidate i; this is how K candidates share one forward pass).
        on: ``"hf"`` (``model.hf``, fast path) or ``"bridge"`` (``model.bridge`` TransformerLens hooks).

    Example:
        >>> with steer(model, [Addition(vec, coeff=4.0)]):
        ...     logits = model.hf(tokens).logits
    """
    per_row = _as_rows(rows)
    device = model.device
    dtype = next(model.hf.parameters()).dtype
    plans = compile_plans(per_row, n_layers=model.n_layers, d_model=model.d_model, device=device, dtype=dtype)
    positions = StepPositions()
    hooks = {layer: make_resid_hook(plan, positions) for layer, plan in plans.items()}
    if on == "hf":
        with _hf_pre_hooks(model, hooks):
            yield positions
    elif on == "bridge":
        fwd_hooks = [(f"blocks.{layer}.hook_resid_pre", _tl_adapter(fn)) for layer, fn in hooks.items()]
        with model.bridge.hooks(fwd_hooks=fwd_hooks):
            yield positions
    else:
        raise ValueError(f"on must be 'hf' or 'bridge', got {on!r}")


def _as_rows(rows: Steering | Sequence[Steering]) -> list[Steering]:
    if len(rows) == 0:
        return [[]]
    first = rows[0]
    if not isinstance(first, Sequence):
        return [list(rows)]  # type: ignore[arg-type]
    per_row: list[Steering] = [list(r) for r in rows]  # type: ignore[arg-type]
    if all(len(r) == len(per_row[0]) and all(a is b for a, b in zip(r, per_row[0], strict=True)) for r in per_row):
        return per_row[:1]  # every row steered by the same objects: one shared plan row
    return per_row


@contextmanager
def _hf_pre_hooks(model: SteerableModel, hooks: dict[int, ResidHook]) -> Iterator[None]:
    # Acquire every handle before the try: if attaching fails, nothing is half-attached and the real
    # error surfaces; once attached, `finally` removes them whatever the body does.
    handles = []
    try:
        for layer, fn in hooks.items():
            handles.append(model.blocks[layer].register_forward_pre_hook(_hf_adapter(fn), with_kwargs=True))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _hf_adapter(fn: ResidHook) -> Callable[..., Any]:
    def pre_hook(
        _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return pre_hook


def _tl_adapter(fn: ResidHook) -> Callable[..., Tensor]:
    def tl_hook(resid: Tensor, hook: Any) -> Tensor:
        return fn(resid)

    return tl_hook
