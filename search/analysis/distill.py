"""Distillation: find a short pair (1..n tokens per side) whose ActAdd vector points where a target vector
points, and measure how much of the target's effect it keeps.

- Match (``distill.match``): ``summed``, the cosine between position-summed vectors at the target's layer; or,
  for a pair at the front positions, ``per_position``: the cosine between the short pair's positions after BOS,
  flattened, and the target compressed into as many positions (its positions after BOS split into that many
  contiguous chunks in order, each summed; ``steering.tokens.compress_positions``). Summing throws placement
  away: the talk pair's " weddings" sits at +position 4 on side a and at -position 6 on side b, and cancels in
  the sum. Compressing keeps order, is defined at every length (the first n positions alone would be zero for
  a pair whose sides share their first word, and never reach a word past position n), equals ``summed`` at one
  token and the exact per-position match at the target's own length. One token per side is searched
  almost exhaustively (a shortlist of ``shortlist`` tokens per side by projection on the target, every
  combination scored exactly); longer pairs by GCG on the cosine (``search.mutate``), started from the
  previous length's winner extended by one token and, for a pair target, from its own truncation.
- Strength: the short pair is added at the target's positions with the projection coefficient
  ``c* = <s, t> / |s|^2`` (so ``c* s`` is the part of ``t`` along ``s``) times the multiplier from
  ``coeff_scales``, or at one of the absolute ``coeffs``, whichever scores best on the *search* split (a
  matched direction does not mean a matched effect: per-position placement and LayerNorm differ between a
  long and a short pair).
- Effect kept: ``(objective(short) - objective(unsteered)) / (objective(target) - objective(unsteered))`` on
  the held-out split (``compare``'s evaluator, with CIs on every metric).

Every reported cosine is recomputed from the pair's *text* (``SteeringVector.from_pair``), so the table
describes pairs a person can type.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from search import params
from search.analysis.evaluation import Evaluation, Method, SplitEvaluator
from search.config import from_dict
from search.config.features import DistillSpec, TargetSpec
from search.mutate import allowed_tokens, gcg, round_trips
from search.outputs import write_text
from search.space import AdditionChoice, Pair
from search.vectors import VectorCache
from steering import Addition, Positions, SteeringVector
from steering.model import SteerableModel
from steering.tokens import VectorScore, compress_positions, cosine_score, positional_cosine_score
from steering.vector import DEFAULT_FILLER, PairTokens, resid_pre

logger = logging.getLogger(__name__)


def target_choice(target: TargetSpec) -> AdditionChoice:
    """The addition a distillation target describes (a pair at its coefficient, or a learned vector)."""
    if target.learned is not None:
        return AdditionChoice(
            None, target.layer, params.LEARNED_COEFF, positions=target.learned.positions, fit=target.learned
        )
    assert target.pair is not None
    return AdditionChoice(Pair(*target.pair), target.layer, target.coeff, positions=target.positions)


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


@dataclass(frozen=True)
class ShortPair:
    """A short pair found for a target: its text, its cosine to the target (recomputed from the text) and
    the projection coefficient ``<s, t> / |s|^2`` that matches the target's length along it."""

    tokens: int
    pair: tuple[str, str]
    cosine: float
    projection_coeff: float
    searched_from: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DistilledPair:
    """A short pair as applied and measured: ``coeff`` is the projection coefficient times the multiplier, or
    the absolute coefficient, best on the search split (``search_objective_by_scale`` and ``_by_coeff``: the
    search objective at each); ``effect_kept`` is its held-out gain over unsteered ÷ the target's."""

    short: ShortPair
    coeff: float
    search_objective_by_scale: dict[str, float]
    heldout: Evaluation
    effect_kept: float | None
    search_objective_by_coeff: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def best_search_objective(self) -> float:
        return max([*self.search_objective_by_scale.values(), *self.search_objective_by_coeff.values()])


@dataclass(frozen=True)
class DistilledTarget:
    target: str
    target_tokens: int | None
    layer: int
    positions: str
    target_norm: float
    target_heldout: Evaluation
    rows: tuple[DistilledPair, ...]
    match: str = "summed"


@dataclass(frozen=True)
class DistillReport:
    """What ``distill.json`` holds."""

    unsteered: Evaluation
    targets: tuple[DistilledTarget, ...]

    FILE = "distill.json"

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> DistillReport | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None


def _matched(vec: SteeringVector, goal: Tensor, match: str) -> tuple[Tensor, Tensor]:
    """The short vector and the target as the match compares them (flattened): summed, or position by position
    after BOS with the target compressed into the short pair's positions."""
    if match == "summed":
        return vec.summed(), goal.sum(dim=0)
    s = vec.activations[1:]
    return s.flatten(), compress_positions(goal, s.shape[0]).flatten()


def distill_vector(
    model: SteerableModel,
    target: SteeringVector,
    coeff: float,
    spec: DistillSpec,
    *,
    pair: tuple[str, str] | None,
    match: str = "summed",
) -> list[ShortPair]:
    """Best short pair per length 1..``max_tokens`` for ``coeff * target``: text, cosine, projection coefficient.

    ``match``: ``summed`` or ``per_position`` (see the module docstring); the cosine and the projection
    coefficient are the match's.
    """
    layer, full = target.layer, coeff * target.activations  # [P, d]
    goal = full.sum(dim=0)
    tokens = single_tokens(model, spec.gcg.readable)
    score: VectorScore = cosine_score(goal) if match == "summed" else positional_cosine_score(full)
    rows: list[ShortPair] = []
    # One token per side occupies one position after BOS: both matches compare it with one vector.
    single = best_single_pair(
        model, layer, goal if match == "summed" else compress_positions(full, 1)[0], tokens, spec.shortlist
    )
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
        s, t = _matched(vec, full, match)
        t = t.to(s.device)
        cos = float(torch.nn.functional.cosine_similarity(s, t, dim=0))
        rows.append(
            ShortPair(
                tokens=n,
                pair=(a, b),
                cosine=cos,
                projection_coeff=float(s @ t / (s @ s)),
                searched_from=tuple(st.decode(model.tokenizer) for st in starts),
            )
        )
        logger.info("distill length %d: %r / %r cosine %.3f", n, a, b, cos)
    return rows


def run_distill(spec: DistillSpec, heldout: SplitEvaluator, vectors: VectorCache) -> DistillReport:
    """Distil each target; choose each short pair's coefficient on the search split; measure target,
    unsteered and every short pair on the held-out split."""
    model, search = heldout.model, heldout.on("search")
    base, _ = heldout(Method("unsteered", []))
    out: list[DistilledTarget] = []
    measured_by_target: dict[str, Evaluation] = {}  # a target listed once per match is measured once
    for target in spec.targets:
        choice = target_choice(target)
        vec = vectors.get(model, choice)
        positions = Positions.parse(choice.positions)
        coeff = choice.applied_coeff
        match = target.matching(spec.match)
        key = f"{choice.describe()} at {positions}"
        if key not in measured_by_target:
            measured_by_target[key], _ = heldout(Method("target", [Addition(vec, coeff, positions)]))
        measured = measured_by_target[key]
        gain = measured.value - base.value
        rows = []
        for short in distill_vector(model, vec, coeff, spec, pair=target.pair, match=match):
            short_vec = SteeringVector.from_pair(model, short.pair[0], short.pair[1], target.layer)
            coeffs = [*(k * short.projection_coeff for k in spec.coeff_scales), *spec.coeffs]
            chosen, on_search = search.best_coeff(short_vec, positions, coeffs)
            by_scale, by_coeff = on_search[: len(spec.coeff_scales)], on_search[len(spec.coeff_scales) :]
            result, _ = heldout(Method(f"{short.tokens} tokens", [Addition(short_vec, chosen, positions)]))
            rows.append(
                DistilledPair(
                    short=short,
                    coeff=chosen,
                    search_objective_by_scale={str(k): v for k, v in zip(spec.coeff_scales, by_scale, strict=True)},
                    search_objective_by_coeff={str(c): v for c, v in zip(spec.coeffs, by_coeff, strict=True)},
                    heldout=result,
                    effect_kept=(result.value - base.value) / gain if gain else None,
                )
            )
        out.append(
            DistilledTarget(
                target=choice.describe() + ("" if match == "summed" else ", per-position match"),
                target_tokens=PairTokens.encode(model, *target.pair).width - 1 if target.pair else None,
                layer=target.layer,
                positions=str(positions),
                target_norm=float((coeff * vec.summed()).norm()),
                target_heldout=measured,
                rows=tuple(rows),
                match=match,
            )
        )
    return DistillReport(base, tuple(out))
