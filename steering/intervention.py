"""What gets added where: ``Addition`` (one vector, coefficient, positions, dimension mask) and its
compiled per-layer, per-row form that the hooks apply."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor

from steering.vector import SteeringVector


class PositionMode(StrEnum):
    FRONT = "front"  # ActAdd: vector position p is added to prompt position p, on the prompt pass only
    ALL = "all"  # the position-summed vector is added at every position, generated ones included
    FROM = "from"  # as ALL, but only from token index ``start`` on (BOS is index 0)


class MaskMode(StrEnum):
    FIRST = "first"  # ActAdd's slice: the first round(frac * d_model) dimensions
    RANDOM = "random"  # a seeded random subset of the same size (control)


@dataclass(frozen=True)
class Positions:
    mode: PositionMode = PositionMode.FRONT
    start: int = 0

    def __post_init__(self) -> None:
        if self.start < 0:
            raise ValueError(f"position start must be >= 0, got {self.start}")
        if self.mode is not PositionMode.FROM and self.start != 0:
            raise ValueError(f"position start is only used with mode 'from', got mode {self.mode.value!r}")

    @classmethod
    def parse(cls, text: str) -> Positions:
        """``"front"``, ``"all"`` or ``"from:K"``."""
        try:
            if text.startswith("from:"):
                return cls(PositionMode.FROM, int(text.split(":", 1)[1]))
            return cls(PositionMode(text))
        except ValueError:
            raise ValueError(f"positions must be 'front', 'all' or 'from:K' (K >= 0), got {text!r}") from None

    def __str__(self) -> str:
        return f"from:{self.start}" if self.mode is PositionMode.FROM else self.mode.value


FRONT = Positions()


@dataclass(frozen=True)
class Addition:
    """``coeff * vector`` added at ``vector.layer``, restricted to ``positions`` and a fraction of dims.

    Example:
        >>> Addition(vec, coeff=4.0)                                   # ActAdd
        >>> Addition(vec, coeff=4.0, frac=0.7)                         # first 70% of dims
        >>> Addition(vec, coeff=4.0, positions=Positions.parse("all"))
    """

    vector: SteeringVector
    coeff: float
    positions: Positions = FRONT
    frac: float = 1.0
    mask: MaskMode = MaskMode.FIRST
    mask_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.frac <= 1.0:
            raise ValueError(f"frac must be in (0, 1], got {self.frac}")
        if not math.isfinite(self.coeff):
            raise ValueError(f"coeff must be finite, got {self.coeff}")

    @property
    def layer(self) -> int:
        return self.vector.layer

    def dim_mask(self) -> Tensor:
        """``[d_model]`` of 0/1: which residual dimensions this addition touches."""
        d = self.vector.d_model
        k = max(1, round(self.frac * d))
        mask = torch.zeros(d)
        if self.mask is MaskMode.FIRST:
            mask[:k] = 1.0
        else:
            g = torch.Generator().manual_seed(self.mask_seed)
            mask[torch.randperm(d, generator=g)[:k]] = 1.0
        return mask

    def delta(self) -> Tensor:
        """What is added: ``[n_pos, d]`` for front positions, ``[1, d]`` (position-summed) otherwise."""
        acts = self.vector.activations
        if self.positions.mode is not PositionMode.FRONT:
            acts = acts.sum(dim=0, keepdim=True)
        return self.coeff * acts * self.dim_mask().to(acts.device)


Steering = Sequence[Addition]
"""Several additions applied together (different pairs and layers); their effects are summed."""


@dataclass
class LayerPlan:
    """The additions of one layer for a batch of rows, as dense tensors.

    ``front[r, p]`` is added at row r's prompt position p during the prompt pass; ``tails[r, m]`` is added
    at every position >= ``starts[r, m]``. Rows share one entry when the batch dimension is 1.
    """

    front: Tensor | None  # [R, P, d] with R in {1, B}
    tails: Tensor | None  # [R, M, d]
    starts: Tensor | None  # [R, M] long


def compile_plans(
    rows: Sequence[Steering], *, n_layers: int, d_model: int, device: torch.device, dtype: torch.dtype
) -> dict[int, LayerPlan]:
    """Turn per-row additions into one ``LayerPlan`` per layer that has any.

    ``rows`` has one entry (shared by every row of the batch) or one per row.
    """
    for additions in rows:
        for add in additions:
            if not 0 <= add.layer < n_layers:
                raise ValueError(f"layer {add.layer} is out of range: this model has layers 0..{n_layers - 1}")
            if add.vector.d_model != d_model:
                raise ValueError(f"vector has d_model {add.vector.d_model}, the model has {d_model}")
    layers = sorted({add.layer for additions in rows for add in additions})
    return {layer: _plan_for_layer(rows, layer, d_model, device, dtype) for layer in layers}


def _plan_for_layer(
    rows: Sequence[Steering], layer: int, d: int, device: torch.device, dtype: torch.dtype
) -> LayerPlan:
    fronts = [[a.delta() for a in adds if a.layer == layer and a.positions.mode is PositionMode.FRONT] for adds in rows]
    tails = [[a for a in adds if a.layer == layer and a.positions.mode is not PositionMode.FRONT] for adds in rows]
    n_pos = max((f.shape[0] for fs in fronts for f in fs), default=0)
    n_tail = max(len(ts) for ts in tails)
    plan = LayerPlan(None, None, None)
    if n_pos:
        rows_front = []
        for fs in fronts:
            total = torch.zeros(n_pos, d, device=device, dtype=dtype)
            for f in fs:
                total = total + torch.nn.functional.pad(f.to(device, dtype), (0, 0, 0, n_pos - f.shape[0]))
            rows_front.append(total)
        plan.front = torch.stack(rows_front)
    if n_tail:
        zero = torch.zeros(1, d, device=device, dtype=dtype)
        never = torch.iinfo(torch.long).max
        plan.tails = torch.stack(
            [torch.cat([a.delta().to(device, dtype) for a in ts] + [zero] * (n_tail - len(ts))) for ts in tails]
        )
        plan.starts = torch.tensor(
            [[a.positions.start for a in ts] + [never] * (n_tail - len(ts)) for ts in tails], device=device
        )
    return plan


def apply_plan(plan: LayerPlan, resid: Tensor, rel: Tensor, prompt_pass: bool) -> Tensor:
    """Add a layer's plan to ``resid [B, T, d]``.

    Args:
        rel: ``[B, T]`` each token's index from its row's first real token (BOS = 0); < 0 for padding.
        prompt_pass: front additions apply only on the prompt pass (never on cached decode steps).
    """
    batch, _, d = resid.shape
    if plan.front is not None and prompt_pass:
        front = _rows(plan.front, batch)  # [B, P, d]
        n_pos = front.shape[1]
        valid = (rel >= 0) & (rel < n_pos)  # [B, T]
        idx = rel.clamp(0, n_pos - 1)[..., None].expand(-1, -1, d)
        resid = resid + torch.gather(front, 1, idx) * valid[..., None].to(resid.dtype)
    if plan.tails is not None and plan.starts is not None:
        tails, starts = _rows(plan.tails, batch), _rows(plan.starts, batch)  # [B, M, d], [B, M]
        on = (rel[:, :, None] >= starts[:, None, :]) & (rel[:, :, None] >= 0)  # [B, T, M]
        resid = resid + torch.einsum("btm,bmd->btd", on.to(resid.dtype), tails)
    return resid


def _rows(t: Tensor, batch: int) -> Tensor:
    if t.shape[0] == batch:
        return t
    if t.shape[0] != 1:
        raise ValueError(f"steering was built for {t.shape[0]} rows but the batch has {batch}")
    return t.expand(batch, *t.shape[1:])
