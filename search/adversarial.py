"""Adversarial pairs for a study: GCG-style mutation of each hand-written baseline pair before the study.

The proxy is the gold log-likelihood (search split) with the mutated pair's vector added at the baseline's
layer and coefficient. The winners join the pool with ``source="adversarial"`` and are enqueued as trials
at that layer and coefficient, so the real objective (BERTScore with damage) judges them, never the proxy.
Results are written to ``adversarial.json`` in the run folder and reused on resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.mutate import MutationConfig, gcg
from search.outputs import write_text
from steering import Positions
from steering.model import SteerableModel
from steering.scoring import tokenize_continuations
from steering.tokens import likelihood_score
from steering.vector import PairTokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdversarialSpec:
    """``gcg`` settings (restart r runs with seed ``gcg.seed + r``), ``restarts`` per baseline pair, and how
    many gold rows the proxy scores per candidate."""

    gcg: MutationConfig = field(default_factory=MutationConfig)
    restarts: int = 1
    rows: int = 16

    def __post_init__(self) -> None:
        if self.restarts < 1 or self.rows < 1:
            raise ValueError("restarts and rows must be >= 1")

    def mutation(self, restart: int) -> MutationConfig:
        return dataclasses.replace(self.gcg, seed=self.gcg.seed + restart)


@dataclass(frozen=True)
class Start:
    """A hand-written pair at the layer, coefficient and positions it is mutated under."""

    pair: tuple[str, str]
    layer: int
    coeff: float
    positions: str = "front"


def mutate_pairs(
    model: SteerableModel, starts: Sequence[Start], rows: Sequence[tuple[str, str]], spec: AdversarialSpec
) -> list[dict[str, Any]]:
    """Run GCG from every start (``restarts`` times); one JSON-able record per run."""
    if not starts:
        raise ValueError("adversarial search needs hand-written baselines to start from")
    seqs, n_tail = tokenize_continuations(model, [p for p, _ in rows], [c for _, c in rows])
    records = []
    for start in starts:
        tokens = PairTokens.encode(model, *start.pair)
        score = likelihood_score(
            model, start.layer, start.coeff, seqs, n_tail, positions=Positions.parse(start.positions)
        )
        for r in range(spec.restarts):
            t0 = time.perf_counter()
            res = gcg(model, tokens, start.layer, score, spec.mutation(r))
            best = res.best.decode(model.tokenizer)
            logger.info("adversarial %r -> %r: proxy %.3f -> %.3f", start.pair, best, res.start_score, res.best_score)
            records.append(
                {
                    "start": list(start.pair),
                    "layer": start.layer,
                    "coeff": start.coeff,
                    "positions": start.positions,
                    "restart": r,
                    "best": list(best),
                    "proxy_start": res.start_score,
                    "proxy_best": res.best_score,
                    "history": res.history,
                    "evaluated": res.evaluated,
                    "seconds": time.perf_counter() - t0,
                }
            )
    return records


def load_or_mutate(
    path: Path,
    model: SteerableModel,
    starts: Sequence[Start],
    rows: Sequence[tuple[str, str]],
    spec: AdversarialSpec,
) -> list[dict[str, Any]]:
    """The records in ``path`` if a previous run wrote them (resume), else run and write them."""
    made_with = {"starts": [dataclasses.asdict(s) for s in starts], "spec": dataclasses.asdict(spec)}
    made_with = json.loads(json.dumps(made_with))  # tuples -> lists, as read back
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("made_with") != made_with:
            raise ValueError(
                f"{path} was made with other baselines or adversarial settings; the study's pair pool depends "
                "on it, so run the changed config into a new --out folder"
            )
        return list(saved["runs"])
    records = mutate_pairs(model, starts, rows, spec)
    proxy = "gold log-likelihood per token (search split)"
    write_text(path, json.dumps({"proxy": proxy, "made_with": made_with, "runs": records}, indent=2))
    return records
