"""Length vs strength: for pairs of increasing length (word-level truncations of long pairs, and
paraphrases), the vector's norm, the objective at a fixed coefficient, and the best coefficient on a grid.

The best coefficient is chosen on the search split (every grid value is measured there); the objective at
the fixed coefficient and at the chosen one are then measured on the held-out split with ``compare``'s
evaluator, so no held-out number is a selection's own score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from steering import Addition, Positions, SteeringVector  # noqa: E402

if TYPE_CHECKING:
    from search.compare import SplitEvaluator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LengthSpec:
    """``truncate``: pairs whose word-level prefixes (1, 2, ... words per side) are measured; ``pairs``:
    further pairs measured as given (paraphrases); ``coeff``: the fixed coefficient; ``coeffs``: the grid
    for the best coefficient."""

    layer: int
    coeff: float
    coeffs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    truncate: tuple[tuple[str, str], ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    positions: str = "front"

    def __post_init__(self) -> None:
        if not self.truncate and not self.pairs:
            raise ValueError("length needs pairs to truncate or pairs to measure")
        if not self.coeffs:
            raise ValueError("coeffs needs at least one value")
        Positions.parse(self.positions)


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


def run_length(spec: LengthSpec, heldout: SplitEvaluator) -> dict[str, Any]:
    from search.compare import Method

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
        rows.append(
            {
                "pair": [a, b],
                "origin": origin,
                "tokens": vec.n_pos - 1,
                "norm": float(vec.activations.norm()),
                "summed_norm": float(vec.summed().norm()),
                "objective_at_coeff": by_coeff[spec.coeff]["objective"],
                "bertscore_f1_at_coeff": by_coeff[spec.coeff]["metrics"].get("bertscore_f1"),
                "best_coeff": best,
                "objective_at_best": by_coeff[best]["objective"],
                "search_objective_by_coeff": {str(c): v for c, v in zip(coeffs, on_search, strict=True)},
            }
        )
        logger.info(
            "length %d %r / %r: norm %.1f, objective %.4f",
            rows[-1]["tokens"],
            a,
            b,
            rows[-1]["norm"],
            rows[-1]["objective_at_coeff"],
        )
    base, _ = heldout(Method("unsteered", []))
    return {
        "layer": spec.layer,
        "coeff": spec.coeff,
        "coeffs": coeffs,
        "positions": str(positions),
        "unsteered_objective": base["objective"],
        "rows": rows,
    }


def length_table(report: dict[str, Any]) -> str:
    from search.compare import fmt_ci

    c = report["coeff"]
    head = (
        f"| pair | origin | tokens | norm | objective at coeff {c:g} | BERTScore F1 at {c:g} | best coeff | "
        "objective at best |"
    )
    lines = [head, "|---" * 8 + "|"]
    for r in sorted(report["rows"], key=lambda r: (r["origin"], r["tokens"])):
        f1s = fmt_ci(r["bertscore_f1_at_coeff"])
        lines.append(
            f"| {r['pair'][0]!r} / {r['pair'][1]!r} | {r['origin']} | {r['tokens']} | {r['norm']:.1f} | "
            f"{r['objective_at_coeff']:.4f} | {f1s} | {r['best_coeff']:g} | {r['objective_at_best']:.4f} |"
        )
    lines.append(f"| unsteered | – | – | – | {report['unsteered_objective']:.4f} | – | – | – |")
    return "\n".join(lines)


def fig_length(report: dict[str, Any], path: Path) -> Path:
    """Three panels against tokens per side: vector norm, objective at the fixed coefficient, best coefficient."""
    rows = report["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    origins = sorted({r["origin"] for r in rows})
    for origin, marker in zip(origins, "osD^v<>", strict=False):
        sel = sorted((r for r in rows if r["origin"] == origin), key=lambda r: r["tokens"])
        xs = [r["tokens"] for r in sel]
        style = {
            "marker": marker,
            "label": origin if len(origin) < 60 else origin[:57] + "...",
            "linestyle": "-" if origin != "as given" else "none",
        }
        axes[0].plot(xs, [r["norm"] for r in sel], **style)
        axes[1].plot(xs, [r["objective_at_coeff"] for r in sel], **style)
        axes[2].plot(xs, [r["best_coeff"] for r in sel], **style)
    axes[1].axhline(report["unsteered_objective"], color="grey", linestyle=":", label="unsteered")
    for ax, title in zip(
        axes,
        (
            "vector norm (all positions)",
            f"held-out objective at coeff {report['coeff']:g}",
            "best coefficient (grid, search split)",
        ),
        strict=True,
    ):
        ax.set_xlabel("tokens per side (longer side)")
        ax.set_title(title, fontsize=10)
    axes[2].set_yscale("log", base=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
