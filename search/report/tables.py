"""The report's Markdown tables: the held-out comparison, distillation, length vs strength. The CLI prints the
same tables."""

from __future__ import annotations

from collections.abc import Sequence

from search.analysis.compare import Comparison
from search.analysis.distill import DistillReport
from search.analysis.evaluation import Evaluation, Interval, shown_metrics
from search.analysis.length import LengthReport


def fmt_ci(v: Interval | None) -> str:
    """``mean [lo, hi]`` of one metric's estimate, or ``–`` when it was not measured."""
    return f"{v.mean:.3f} [{v.lo:.3f}, {v.hi:.3f}]" if v else "–"


def comparison_table(comparison: Comparison, metrics: Sequence[str] | None = None) -> str:
    """One row per method, ``mean [lo, hi]`` per metric (default: the shown metrics that were measured)."""
    metrics = list(metrics) if metrics is not None else shown_metrics(comparison.methods.values())
    rows = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, e in comparison.methods.items():
        rows.append(f"| {name} | " + " | ".join(fmt_ci(e.metrics.get(m)) for m in metrics) + " |")
    return "\n".join(rows)


def _f1(e: Evaluation) -> str:
    return fmt_ci(e.metrics.get("bertscore_f1"))


def distill_table(report: DistillReport) -> str:
    """One row per target and length, with the unsteered row last."""
    head = "| target | tokens per side | short pair | cosine | coeff | objective | BERTScore F1 | effect kept |"
    lines = [head, "|---" * 8 + "|"]
    for t in report.targets:
        tm = t.target_heldout
        lines.append(
            f"| {t.target} | {t.target_tokens or '–'} (target) | – | 1.000 | – | {tm.value:.4f} | {_f1(tm)} | 100% |"
        )
        for r in t.rows:
            kept = f"{100 * r.effect_kept:.0f}%" if r.effect_kept is not None else "–"
            a, b = r.short.pair
            lines.append(
                f"| | {r.short.tokens} | {a!r} / {b!r} | {r.short.cosine:.3f} | {r.coeff:.3g} | "
                f"{r.heldout.value:.4f} | {_f1(r.heldout)} | {kept} |"
            )
    base = report.unsteered
    lines.append(f"| unsteered | – | – | – | – | {base.value:.4f} | {_f1(base)} | 0% |")
    return "\n".join(lines)


def length_table(report: LengthReport) -> str:
    """One row per pair (by origin, then length), with the unsteered objective last."""
    c = report.coeff
    head = (
        f"| pair | origin | tokens | norm | objective at coeff {c:g} | BERTScore F1 at {c:g} | best coeff | "
        "objective at best |"
    )
    lines = [head, "|---" * 8 + "|"]
    for r in sorted(report.rows, key=lambda r: (r.origin, r.tokens)):
        lines.append(
            f"| {r.pair[0]!r} / {r.pair[1]!r} | {r.origin} | {r.tokens} | {r.norm:.1f} | "
            f"{r.at_coeff.value:.4f} | {_f1(r.at_coeff)} | {r.best_coeff:g} | {r.at_best.value:.4f} |"
        )
    lines.append(f"| unsteered | – | – | – | {report.unsteered.value:.4f} | – | – | – |")
    return "\n".join(lines)
