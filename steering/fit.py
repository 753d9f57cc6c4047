"""Gradient-fitted steering vectors: Adam on a residual-stream vector at one layer, the model frozen.

The loss raises the teacher-forced log-likelihood of target passages after prompts ("promote") and may
lower that of other passages ("suppress"), as in one-shot optimised steering. Its size is held by a norm
bound (projection after every step) and/or an L2 penalty. The vector is added at ``positions``: a fitted
``[1, d]`` vector at every token after BOS by default, or an ActAdd-style ``[n_pos, d]`` front vector
when fine-tuning a prompt pair's vector in place.

Example:
    >>> rows = [("I went up to my friend and said", " The wedding was lovely.")]
    >>> fit = fit_vector(model, 1, rows, config=FitConfig(lr=0.05, steps=50, norm_bound=20.0))
    >>> fit.vector.save("runs/x/learned_l1")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from steering.intervention import Addition, PositionMode, Positions
from steering.model import SteerableModel
from steering.scoring import tail_logprobs, tokenize_continuations
from steering.vector import SteeringVector

TextRows = Sequence[tuple[str, str]]
"""``(prefix, continuation)`` rows; the continuation's tokens are scored given BOS + prefix."""


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one fit (all of them searchable).

    Attributes:
        lr: Adam learning rate.
        steps: maximum optimiser steps.
        batch_size: rows per step, drawn (seeded) from promote and suppress each; all rows if fewer.
        norm_bound: after each step the vector is scaled back onto ``‖v‖ <= norm_bound`` (Frobenius norm);
            when fine-tuning from ``init``, onto ``max(norm_bound, ‖start‖)``, so the bound caps growth and
            never shrinks the starting vector.
        norm_penalty: ``norm_penalty * ‖v‖²`` is added to the loss.
        suppress_weight: weight of the suppressed rows' mean log-likelihood in the loss.
        target_loss: stop early once a step's loss is at or below this.
        positions: ``"from:1"`` (every token after BOS), ``"all"``, or ``"front"`` (per-position vector).
        seed: row sampling and random initialisation.
        init_scale: standard deviation of a random initial vector (0: start from zeros) when no ``init``.
    """

    lr: float = 0.05
    steps: int = 100
    batch_size: int = 16
    norm_bound: float | None = None
    norm_penalty: float = 0.0
    suppress_weight: float = 1.0
    target_loss: float | None = None
    positions: str = "from:1"
    seed: int = 0
    init_scale: float = 0.0

    def __post_init__(self) -> None:
        if not (self.lr > 0 and self.steps >= 1 and self.batch_size >= 1):
            raise ValueError(
                f"fit needs lr > 0, steps >= 1 and batch_size >= 1, got {self.lr}, {self.steps}, {self.batch_size}"
            )
        if self.norm_bound is not None and self.norm_bound <= 0:
            raise ValueError(f"norm_bound must be > 0, got {self.norm_bound}")
        if self.norm_penalty < 0 or self.suppress_weight < 0 or self.init_scale < 0:
            raise ValueError("norm_penalty, suppress_weight and init_scale must be >= 0")
        Positions.parse(self.positions)


@dataclass(frozen=True)
class FitResult:
    vector: SteeringVector
    positions: Positions
    losses: list[float] = field(default_factory=list)
    stopped: str = "steps"  # or "target_loss"

    @property
    def steps(self) -> int:
        return len(self.losses)

    def addition(self) -> Addition:
        """The fitted intervention: the vector at coefficient 1 at the positions it was fitted for."""
        return Addition(self.vector, 1.0, self.positions)


class _Rows:
    """Pre-tokenised rows and a seeded batch sampler over them."""

    def __init__(self, model: SteerableModel, rows: TextRows) -> None:
        prefixes, conts = zip(*rows, strict=True) if rows else ((), ())
        self.seqs, self.n_tail = tokenize_continuations(model, list(prefixes), list(conts)) if rows else ([], [])

    def batch(self, size: int, gen: torch.Generator) -> tuple[list[list[int]], list[int]]:
        n = len(self.seqs)
        idx = range(n) if n <= size else torch.randperm(n, generator=gen)[:size].tolist()
        return [self.seqs[i] for i in idx], [self.n_tail[i] for i in idx]


def initial_tensor(
    model: SteerableModel, positions: Positions, init: SteeringVector | None, init_scale: float, seed: int
) -> torch.Tensor:
    """``[n_pos, d]`` starting point: ``init`` (summed over positions unless fitting front positions),
    else seeded noise of std ``init_scale``, else zeros."""
    if init is not None:
        acts = init.activations if positions.mode is PositionMode.FRONT else init.summed()[None, :]
        return acts.detach().to(model.device, torch.float32).clone()
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(1, model.d_model, generator=gen) * init_scale).to(model.device)


def fit_vector(
    model: SteerableModel,
    layer: int,
    promote: TextRows,
    *,
    suppress: TextRows = (),
    config: FitConfig = FitConfig(),
    init: SteeringVector | None = None,
    init_coeff: float = 1.0,
) -> FitResult:
    """Fit a steering vector at ``layer`` by Adam; only the vector receives gradients.

    Args:
        promote: rows whose continuation log-likelihood (mean per token) is raised.
        suppress: rows whose continuation log-likelihood is lowered, weighted by ``suppress_weight``.
        init: start from this vector times ``init_coeff`` (e.g. a prompt pair's), i.e. fine-tune it.

    Returns:
        The fitted vector (metadata records the config and final loss), its positions and the loss per step.
    """
    model.check_layer(layer)
    if not promote:
        raise ValueError("nothing to promote: give at least one (prefix, continuation) row")
    if init is not None and init.d_model != model.d_model:
        raise ValueError(f"init vector has d_model {init.d_model}, the model has {model.d_model}")
    positions = Positions.parse(config.positions)
    start = initial_tensor(model, positions, init, config.init_scale, config.seed) * init_coeff
    param = torch.nn.Parameter(start)
    bound = (
        None if config.norm_bound is None else max(config.norm_bound, float(start.norm()) if init is not None else 0.0)
    )
    opt = torch.optim.Adam([param], lr=config.lr)
    pos_rows, neg_rows = _Rows(model, promote), _Rows(model, suppress)
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    stopped = "steps"
    for _ in range(config.steps):
        p_seqs, p_tail = pos_rows.batch(config.batch_size, gen)
        n_seqs, n_tail = neg_rows.batch(config.batch_size, gen) if neg_rows.seqs else ([], [])
        add = Addition(SteeringVector(param, layer), 1.0, positions)  # not detached: the graph reaches param
        logp = tail_logprobs(model, p_seqs + n_seqs, p_tail + n_tail, [[add]], grad=True)  # [rows]
        k = len(p_seqs)
        loss = -logp[:k].sum() / sum(p_tail)
        if n_seqs:
            loss = loss + config.suppress_weight * logp[k:].sum() / sum(n_tail)
        if config.norm_penalty:
            loss = loss + config.norm_penalty * param.pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bound is not None:
            with torch.no_grad():
                norm = float(param.norm())
                if norm > bound:
                    param.mul_(bound / norm)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"fit diverged at step {len(losses)} (loss {losses[-1]}); lower lr")
        if config.target_loss is not None and losses[-1] <= config.target_loss:
            stopped = "target_loss"
            break
    meta = {
        "kind": "learned",
        "model": model.name,
        "lr": config.lr,
        "steps_run": len(losses),
        "norm_bound": config.norm_bound,
        "norm_bound_applied": bound,
        "norm_penalty": config.norm_penalty,
        "positions": str(positions),
        "seed": config.seed,
        "final_loss": losses[-1],
        "init": dict(init.metadata) if init is not None else None,
        "init_coeff": init_coeff if init is not None else None,
    }
    vec = SteeringVector(param.detach().float().cpu().clone(), layer, meta)
    return FitResult(vec, positions, losses, stopped)
