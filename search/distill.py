"""Distillation: find a short pair (1..n tokens per side) whose ActAdd vector points where a target vector
points, and measure how much of the target's effect it keeps.

- Match: cosine between position-summed vectors at the target's layer. One token per side is searched
  almost exhaustively (a shortlist of ``shortlist`` tokens per side by projection on the target, every
  combination scored exactly); longer pairs by GCG on the cosine (``search.mutate``), started from the
  previous length's winner extended by one token and, for a pair target, from its own truncation.
- Strength: the short pair is added at the target's positions with the projection coefficient
  ``c* = <s, t> / |s|^2`` (so ``c* s`` is the part of ``t`` along ``s``) times the multiplier from
  ``coeff_scales`` that scores best on the *search* split (a matched direction does not mean a matched
  effect: per-position placement and LayerNorm differ between a long and a short pair).
- Effect kept: ``(objective(short) - objective(unsteered)) / (objective(target) - objective(unsteered))`` on
  the held-out split (``compare``'s evaluator, with CIs on every metric).

Every reported cosine is recomputed from the pair's *text* (``SteeringVector.from_pair``), so the table
describes pairs a person can type.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from search.mutate import MutationConfig, allowed_tokens, gcg, round_trips
from search.space import AdditionChoice, FitChoice, Pair
from steering import Addition, Positions, SteeringVector
from steering.model import SteerableModel
from steering.tokens import cosine_score
from steering.vector import DEFAULT_FILLER, PairTokens, resid_pre

if TYPE_CHECKING:
    from search.compare import SplitEvaluator
    from search.vectors import VectorCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetSpec:
    """A vector to distill: a pair's ActAdd vector times ``coeff`` (front positions), or a learned vector
    fitted with ``learned`` on the search split (added at its fit positions, coefficient 1)."""

    layer: int
    pair: tuple[str, str] | None = None
    coeff: float = 1.0
    learned: FitChoice | None = None

    def __post_init__(self) -> None:
        if (self.pair is None) == (self.learned is None):
            raise ValueError("a distillation target is either a pair or a learned vector (give exactly one)")

    def choice(self) -> AdditionChoice:
        if self.learned is not None:
            return AdditionChoice(None, self.layer, 1.0, positions=self.learned.positions, fit=self.learned)
        assert self.pair is not None
        return AdditionChoice(Pair(*self.pair), self.layer, self.coeff)


@dataclass(frozen=True)
class DistillSpec:
    targets: tuple[TargetSpec, ...]
    max_tokens: int = 3
    coeff_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    shortlist: int = 128
    gcg: MutationConfig = field(default_factory=lambda: MutationConfig(steps=16, top_k=32, candidates=64))

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("distill needs at least one target")
        if self.max_tokens < 1 or self.shortlist < 1:
            raise ValueError("max_tokens and shortlist must be >= 1")
        if not self.coeff_scales or min(self.coeff_scales) <= 0:
            raise ValueError("coeff_scales needs positive multipliers")


def single_tokens(model: SteerableModel, readable: bool) -> list[int]:
    """Allowed tokens whose text round-trips to exactly that one token."""
    ids = torch.nonzero(allowed_tokens(model, readable)[0])[:, 0].tolist()
    return [i for i in ids if model.encode(str(model.tokenizer.decode([i])))[1:] == [i]]


def best_single_pair(
    model: SteerableModel, layer: int, target: Tensor, tokens: list[int], shortlist: int
) -> PairTokens:
    """The one-token-per-side pair (side b may be empty, i.e. the filler) with the highest cosine to
    ``target [d]``: every pair among the ``shortlist`` tokens with the highest (side a) and lowest (side b)
    projection on the target is scored exactly."""
    filler = model.single_token_id(DEFAULT_FILLER)
    ids = torch.tensor([*tokens, filler])
    bos = torch.full_like(ids, model.bos_token_id)
    acts = resid_pre(model, torch.stack([bos, ids], 1), layer, chunk=512)[:, 1].float()
    # [N+1, d]; position 0 (BOS) is shared by both sides and cancels
    goal = target.float().to(acts.device)
    proj = acts[:-1] @ goal / goal.norm()
    m = min(shortlist, len(tokens))
    xs = torch.topk(proj, m).indices
    ys = torch.cat([torch.topk(-proj, m).indices, torch.tensor([len(tokens)], device=xs.device)])  # + filler
    diffs = acts[xs][:, None] - acts[ys][None]  # [m, m+1, d]
    cos = torch.nn.functional.cosine_similarity(diffs, goal[None, None], dim=-1)
    cos[xs[:, None] == ys[None]] = -2.0
    i, j = divmod(int(cos.argmax()), cos.shape[1])
    y = int(ys[j])
    return PairTokens((tokens[int(xs[i])],), () if y == len(tokens) else (tokens[y],), filler)


def _extend(model: SteerableModel, prev: PairTokens, single: PairTokens, tokens: list[int]) -> PairTokens | None:
    """``prev`` with one more token per non-empty side (the single winner's first, else the first that
    round-trips)."""
    for extra_a in [single.a[0], *tokens]:
        for extra_b in [single.b[0] if single.b else extra_a, *tokens[:50]]:
            cand = PairTokens(prev.a + (extra_a,), prev.b + ((extra_b,) if prev.b else ()), prev.filler)
            if round_trips(model, cand):
                return cand
    return None


def _truncation(model: SteerableModel, pair: tuple[str, str], n: int) -> PairTokens | None:
    full = PairTokens.encode(model, *pair)
    cand = PairTokens(full.a[:n], full.b[:n], full.filler)
    return cand if (cand.a or cand.b) and round_trips(model, cand) else None


def distill_vector(
    model: SteerableModel, target: SteeringVector, coeff: float, spec: DistillSpec, *, pair: tuple[str, str] | None
) -> list[dict[str, Any]]:
    """Best short pair per length 1..``max_tokens`` for ``coeff * target``: text, cosine, projection coefficient."""
    layer, goal = target.layer, coeff * target.summed()
    tokens = single_tokens(model, spec.gcg.readable)
    score = cosine_score(goal)
    rows: list[dict[str, Any]] = []
    single = best_single_pair(model, layer, goal, tokens, spec.shortlist)
    prev = single
    for n in range(1, spec.max_tokens + 1):
        starts = [single] if n == 1 else [s for s in (_extend(model, prev, single, tokens),) if s is not None]
        if pair is not None and n > 1:
            starts += [s for s in (_truncation(model, pair, n),) if s is not None]
        if not starts:  # no n-token pair that round-trips could be built: stop rather than mislabel a row
            logger.warning("distill: no %d-token start pair round-trips; stopping at %d tokens", n, n - 1)
            break
        found = [gcg(model, s, layer, score, spec.gcg) for s in starts] if n > 1 else []
        best = max(found, key=lambda r: r.best_score).best if found else single
        prev = best
        a, b = best.decode(model.tokenizer)
        vec = SteeringVector.from_pair(model, a, b, layer)  # from the text: what a person would type
        s = vec.summed()
        cos = float(torch.nn.functional.cosine_similarity(s, goal.to(s.device), dim=0))
        rows.append(
            {
                "tokens": n,
                "pair": [a, b],
                "cosine": cos,
                "coeff": float(s @ goal.to(s.device) / (s @ s)),
                "searched_from": [list(st.decode(model.tokenizer)) for st in starts],
            }
        )
        logger.info("distill length %d: %r / %r cosine %.3f", n, a, b, cos)
    return rows


def run_distill(spec: DistillSpec, heldout: SplitEvaluator, vectors: VectorCache) -> dict[str, Any]:
    """Distil each target; choose each short pair's coefficient on the search split; measure target,
    unsteered and every short pair on the held-out split."""
    from search.compare import Method, objective_of

    model, search = heldout.model, heldout.on("search")
    base, _ = heldout(Method("unsteered", []))
    out: list[dict[str, Any]] = []
    for target in spec.targets:
        choice = target.choice()
        vec = vectors.get(model, choice)
        positions = Positions.parse(choice.positions)
        coeff = 1.0 if choice.fit is not None else choice.coeff
        measured, _ = heldout(Method("target", [Addition(vec, coeff, positions)]))
        rows = distill_vector(model, vec, coeff, spec, pair=target.pair)
        gain = objective_of(measured) - objective_of(base)
        for row in rows:
            short = SteeringVector.from_pair(model, row["pair"][0], row["pair"][1], target.layer)
            row["projection_coeff"] = row["coeff"]
            coeffs = [k * row["coeff"] for k in spec.coeff_scales]
            row["coeff"], on_search = search.best_coeff(short, positions, coeffs)
            row["search_objective_by_scale"] = {str(k): v for k, v in zip(spec.coeff_scales, on_search, strict=True)}
            row["heldout"], _ = heldout(Method(f"{row['tokens']} tokens", [Addition(short, row["coeff"], positions)]))
            row["effect_kept"] = (objective_of(row["heldout"]) - objective_of(base)) / gain if gain else None
        out.append(
            {
                "target": choice.describe(),
                "target_tokens": PairTokens.encode(model, *target.pair).width - 1 if target.pair else None,
                "layer": target.layer,
                "positions": str(positions),
                "target_norm": float((coeff * vec.summed()).norm()),
                "target_heldout": measured,
                "rows": rows,
            }
        )
    return {"unsteered": base, "targets": out}


def distill_table(report: dict[str, Any]) -> str:
    """Markdown: one row per target and length."""
    from search.compare import objective_of

    head = "| target | tokens per side | short pair | cosine | coeff | objective | BERTScore F1 | effect kept |"
    lines = [head, "|---" * 8 + "|"]
    base = objective_of(report["unsteered"])
    for t in report["targets"]:
        tm = t["target_heldout"]
        lines.append(
            f"| {t['target']} | {t['target_tokens'] or '–'} (target) | – | 1.000 | – | {objective_of(tm):.4f} | "
            f"{_ci(tm, 'bertscore_f1')} | 100% |"
        )
        for r in t["rows"]:
            kept = f"{100 * r['effect_kept']:.0f}%" if r["effect_kept"] is not None else "–"
            lines.append(
                f"| | {r['tokens']} | {r['pair'][0]!r} / {r['pair'][1]!r} | {r['cosine']:.3f} | {r['coeff']:.3g} | "
                f"{objective_of(r['heldout']):.4f} | {_ci(r['heldout'], 'bertscore_f1')} | {kept} |"
            )
    lines.append(f"| unsteered | – | – | – | – | {base:.4f} | {_ci(report['unsteered'], 'bertscore_f1')} | 0% |")
    return "\n".join(lines)


def _ci(result: dict[str, Any], metric: str) -> str:
    from search.compare import fmt_ci

    return fmt_ci(result["metrics"].get(metric))
