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
from dataclasses import dataclass
from pathlib import Path

from search.config import from_dict
from search.config.features import AdversarialSpec
from search.mutate import gcg
from search.outputs import write_text
from steering import Positions
from steering.model import SteerableModel
from steering.scoring import tokenize_continuations
from steering.tokens import likelihood_score
from steering.vector import PairTokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Start:
    """A hand-written pair at the layer, coefficient and positions it is mutated under."""

    pair: tuple[str, str]
    layer: int
    coeff: float
    positions: str = "front"


@dataclass(frozen=True)
class AdversarialRun:
    """One GCG run from a hand-written pair: the pair found, and the proxy (gold log-likelihood per token on
    the search split) at the start and at the end."""

    start: tuple[str, str]
    layer: int
    coeff: float
    positions: str
    restart: int
    best: tuple[str, str]
    proxy_start: float
    proxy_best: float
    history: tuple[float, ...]
    evaluated: int
    seconds: float

    @property
    def improved(self) -> bool:
        """Whether the run found a pair other than its start (only such winners join the study)."""
        return self.best != self.start


FILE = "adversarial.json"


def load_runs(run_dir: Path) -> list[AdversarialRun]:
    """The runs an ``adversarial.json`` in ``run_dir`` holds (none if there is no such file)."""
    path = run_dir / FILE
    if not path.exists():
        return []
    return [
        from_dict(AdversarialRun, r, f"{FILE} runs[{i}]") for i, r in enumerate(json.loads(path.read_text())["runs"])
    ]


def mutate_pairs(
    model: SteerableModel, starts: Sequence[Start], rows: Sequence[tuple[str, str]], spec: AdversarialSpec
) -> list[AdversarialRun]:
    """Run GCG from every start (``restarts`` times); one record per run."""
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
                AdversarialRun(
                    start=tuple(start.pair),  # type: ignore[arg-type]
                    layer=start.layer,
                    coeff=start.coeff,
                    positions=start.positions,
                    restart=r,
                    best=best,
                    proxy_start=res.start_score,
                    proxy_best=res.best_score,
                    history=tuple(res.history),
                    evaluated=res.evaluated,
                    seconds=time.perf_counter() - t0,
                )
            )
    return records


def load_or_mutate(
    run_dir: Path,
    model: SteerableModel,
    starts: Sequence[Start],
    rows: Sequence[tuple[str, str]],
    spec: AdversarialSpec,
) -> list[AdversarialRun]:
    """The runs ``run_dir/adversarial.json`` holds if a previous run wrote them (resume), else run them and
    write the file."""
    path = run_dir / FILE
    made_with = {"starts": [dataclasses.asdict(s) for s in starts], "spec": dataclasses.asdict(spec)}
    made_with = json.loads(json.dumps(made_with))  # tuples -> lists, as read back
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("made_with") != made_with:
            raise ValueError(
                f"{path} was made with other baselines or adversarial settings; the study's pair pool depends "
                "on it, so run the changed config into a new --out folder"
            )
        return load_runs(run_dir)
    records = mutate_pairs(model, starts, rows, spec)
    proxy = "gold log-likelihood per token (search split)"
    runs = [dataclasses.asdict(r) for r in records]
    write_text(path, json.dumps({"proxy": proxy, "made_with": made_with, "runs": runs}, indent=2))
    return records
