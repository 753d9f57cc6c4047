"""Length vs strength: for pairs of increasing length (word-level truncations of long pairs, and
paraphrases), the vector's norm, the objective at a fixed coefficient, and the best coefficient on a grid.

The best coefficient is chosen on the search split (every grid value is measured there); the objective at
the fixed coefficient and at the chosen one are then measured on the held-out split with ``compare``'s
evaluator, so no held-out number is a selection's own score.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from search.analysis.evaluation import Evaluation, Method, SplitEvaluator
from search.config import from_dict
from search.config.features import LengthSpec
from search.outputs import write_text
from steering import Addition, Positions, SteeringVector

logger = logging.getLogger(__name__)


def truncations(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level prefixes of both sides, 1 word up to the longer side's length; pairs with equal sides
    (a zero vector) are left out."""
    wa, wb = a.split(), b.split()
    out = []
    for k in range(1, max(len(wa), len(wb)) + 1):
        pair = (" ".join(wa[:k]), " ".join(wb[:k]))
        if pair[0] != pair[1] and pair not in out:
            out.append(pair)
    return out


@dataclass(frozen=True)
class LengthRow:
    """One pair: its length and norms, held-out evaluations at the fixed coefficient and at the coefficient
    best on the search split, and the search-split objective at every grid coefficient."""

    pair: tuple[str, str]
    origin: str
    tokens: int
    norm: float
    summed_norm: float
    at_coeff: Evaluation
    best_coeff: float
    at_best: Evaluation
    search_objective_by_coeff: dict[str, float]


@dataclass(frozen=True)
class LengthReport:
    """What ``length.json`` holds."""

    layer: int
    coeff: float
    coeffs: tuple[float, ...]
    positions: str
    unsteered: Evaluation
    rows: tuple[LengthRow, ...]

    FILE = "length.json"

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> LengthReport | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None


def run_length(spec: LengthSpec, heldout: SplitEvaluator) -> LengthReport:
    """Measure every truncation and paraphrase (see the module docstring)."""
    model, search = heldout.model, heldout.on("search")
    todo = [(p, f"truncation of {t[0]!r} / {t[1]!r}") for t in spec.truncate for p in truncations(*t)]
    todo += [(p, "as given") for p in spec.pairs]
    positions = Positions.parse(spec.positions)
    coeffs = sorted({*spec.coeffs, spec.coeff})
    rows = []
    for (a, b), origin in todo:
        vec = SteeringVector.from_pair(model, a, b, spec.layer)
        best, on_search = search.best_coeff(vec, positions, coeffs)
        by_coeff = {
            c: heldout(Method(f"{a!r}/{b!r} c{c:g}", [Addition(vec, c, positions)]))[0]
            for c in sorted({spec.coeff, best})
        }
        row = LengthRow(
            pair=(a, b),
            origin=origin,
            tokens=vec.n_pos - 1,
            norm=float(vec.activations.norm()),
            summed_norm=float(vec.summed().norm()),
            at_coeff=by_coeff[spec.coeff],
            best_coeff=best,
            at_best=by_coeff[best],
            search_objective_by_coeff={str(c): v for c, v in zip(coeffs, on_search, strict=True)},
        )
        rows.append(row)
        logger.info("length %d %r / %r: norm %.1f, objective %.4f", row.tokens, a, b, row.norm, row.at_coeff.value)
    base, _ = heldout(Method("unsteered", []))
    return LengthReport(spec.layer, spec.coeff, tuple(coeffs), str(positions), base, tuple(rows))
