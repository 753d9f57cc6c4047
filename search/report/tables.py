"""The report's Markdown tables: the held-out comparison, selection, distillation, length vs strength, the
overshoot grid. The CLI prints the same tables."""

from __future__ import annotations

import re
from collections.abc import Sequence

from search.analysis.compare import Comparison
from search.analysis.distill import DistillReport
from search.analysis.evaluation import Evaluation, Interval, Paired, shown_metrics
from search.analysis.length import LengthReport
from search.analysis.overshoot import LABELS as OVERSHOOT_LABELS
from search.analysis.overshoot import METRICS as OVERSHOOT_METRICS
from search.analysis.overshoot import RANDOM as RANDOM_MASK
from search.analysis.overshoot import OvershootReport
from search.analysis.purity import PurityPoint, pareto_front
from search.analysis.select import Selection


def fmt_ci(v: Interval | None) -> str:
    """``mean [lo, hi]`` of one metric's estimate, or ``–`` when it was not measured."""
    return f"{v.mean:.3f} [{v.lo:.3f}, {v.hi:.3f}]" if v else "–"


def fmt_paired(p: Paired | None) -> str:
    """``beats +0.012 [+0.004, +0.020]``: the verdict and the paired difference with its CI."""
    if p is None:
        return "–"
    d = p.diff
    return f"{p.verdict} {d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def abbreviate(name: str, width: int = 48) -> str:
    """``name`` with every quoted string longer than ``width`` characters cut to its first words and an
    ellipsis, so a row for a paragraph-long pair or prefix stays readable; shorter names are unchanged.

    Example:
        >>> abbreviate("'I tell the truth, even when it is awkward, and I say plainly' / '' L18", 24)
        "'I tell the truth…' / '' L18"
    """

    def cut(m: re.Match[str]) -> str:
        text = m.group(0)
        if len(text) <= width:
            return text
        head = text[: width - 2].rsplit(" ", 1)[0].rstrip(",.:;")
        return f"{head}…{text[-1]}"

    return _QUOTED.sub(cut, name)


def fmt_tokens(n: float | None) -> str:
    """Tokens of context: a whole number when it is one, else one decimal; ``–`` when not recorded."""
    if n is None:
        return "–"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


def comparison_table(comparison: Comparison, metrics: Sequence[str] | None = None) -> str:
    """One row per method: its objective, ``mean [lo, hi]`` per metric (default: the shown metrics that were
    measured), where selection ran its paired difference from the tuned hand-written pair and from prompting,
    and the tokens of context it adds to each prompt (where recorded). The winner is marked."""
    metrics = list(metrics) if metrics is not None else shown_metrics(comparison.methods.values())
    against = [r for r in (comparison.reference, comparison.prompting) if r and comparison.paired]
    heads = ["method", "objective", *metrics]
    heads += ["vs tuned hand-written" if r == comparison.reference else "vs prompting" for r in against]
    heads += ["context tokens"] if comparison.context_tokens else []
    rows = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for name, e in comparison.methods.items():
        shown = f"**winner**: {abbreviate(name)}" if name == comparison.winner else abbreviate(name)
        cells = [shown, f"{e.objective:.4f}" if e.objective is not None else "–"]
        cells += [fmt_ci(e.metrics.get(m)) for m in metrics]
        cells += [fmt_paired(comparison.paired.get(name, {}).get(r)) for r in against]
        cells += [fmt_tokens(comparison.context_tokens.get(name))] if comparison.context_tokens else []
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def verdict_text(comparison: Comparison) -> str:
    """The winner's outcome on the test split in words (empty where no selection ran)."""
    if comparison.winner is None:
        return ""
    lines = []
    paired = comparison.paired.get(comparison.winner, {})
    for ref, what in ((comparison.reference, "the tuned hand-written pair"), (comparison.prompting, "prompting")):
        if ref is not None and ref in paired:
            d = paired[ref].diff
            lines.append(f"{paired[ref].verdict} {what} ({d.mean:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}])")
    winner = abbreviate(comparison.winner)
    if not lines:
        return f"Winner: {winner}."
    return f"On the test split the winner, {winner}, " + "; it ".join(lines) + "."


def purity_table(points: list[PurityPoint]) -> str:
    """The Pareto front of on-target gain against off-target KL: one row per front trial, by increasing KL."""
    rows = [
        "| trial | candidate | source | gain (concept_score) | off-target KL | gain per nat |",
        "|---|---|---|---|---|---|",
    ]
    for p in pareto_front(points):
        rows.append(f"| {p.number} | {abbreviate(p.label)} | {p.source} | {p.gain:.3f} | {p.kl:.3f} | {p.purity:.3f} |")
    return "\n".join(rows)


def selection_table(selection: Selection) -> str:
    """The winner's curse in one table: each contender's objective on the search, validation and test splits."""
    rows = ["| contender | kind | search | validation | test |", "|---|---|---|---|---|"]
    for c in selection.contenders:
        name = f"**winner**: {abbreviate(c.name)}" if c.name == selection.winner else abbreviate(c.name)
        search = f"{c.search:.4f}" if c.search is not None else "–"
        val = c.validation.objective
        test = c.test.objective if c.test is not None else None
        cells = [
            name,
            c.kind,
            search,
            f"{val:.4f}" if val is not None else "–",
            f"{test:.4f}" if test is not None else "–",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _f1(e: Evaluation) -> str:
    return fmt_ci(e.metrics.get("bertscore_f1"))


def distill_table(report: DistillReport) -> str:
    """One row per target and length, with the unsteered row last."""
    head = "| target | tokens per side | short pair | cosine | coeff | objective | BERTScore F1 | effect kept |"
    lines = [head, "|---" * 8 + "|"]
    for t in report.targets:
        tm = t.target_heldout
        target, tokens = abbreviate(t.target), t.target_tokens or "–"
        lines.append(f"| {target} | {tokens} (target) | – | 1.000 | – | {tm.value:.4f} | {_f1(tm)} | 100% |")
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


def overshoot_table(report: OvershootReport) -> str:
    """One row per layer, coefficient and frac: each metric for first-k dims (mean [95% CI]) and for random
    dims (mean over mask seeds), and the paired difference from the reference frac at the same coefficient."""
    metrics = [m for m in OVERSHOOT_METRICS if m in report.unsteered.metrics]
    random = RANDOM_MASK in report.masks
    heads = ["layer", "coeff", "frac"]
    for m in metrics:
        heads += [f"{OVERSHOOT_LABELS[m]} first-k"] + ([f"{OVERSHOOT_LABELS[m]} random"] if random else [])
    heads += [f"first-k − frac {report.reference:g}: {OVERSHOOT_LABELS[m]}" for m in metrics]
    rows = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    base = ["unsteered", "–", "–"]
    for m in metrics:
        base += [fmt_ci(report.unsteered.metrics.get(m))] + (["–"] if random else [])
    rows.append("| " + " | ".join(base + ["–"] * len(metrics)) + " |")
    tests = {(t.layer, t.coeff, t.frac, t.metric): t.paired for t in report.frac_tests if t.mask == "first"}
    for layer in report.layers:
        for coeff in report.coeffs:
            for frac in report.fracs:
                cells = [f"{layer}", f"{coeff:g}", f"{frac:g}"]
                first = report.cells_at(layer, coeff, frac, "first")[0].evaluation
                for m in metrics:
                    cells.append(fmt_ci(first.metrics.get(m)))
                    if random:
                        cells.append("=" if frac >= 1 else f"{report.value(layer, coeff, frac, RANDOM_MASK, m):.3f}")
                cells += [fmt_paired(tests.get((layer, coeff, frac, m))) for m in metrics]
                rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def overshoot_correlations(report: OvershootReport) -> str:
    """Spearman's rank correlation of each pair of metrics across the grid, every cell and per layer."""
    rows = ["| metrics | cells | n | Spearman ρ |", "|---|---|---|---|"]
    for c in report.correlations:
        rho = f"{c.rho:+.2f}" if c.rho is not None else "– (constant)"
        rows.append(f"| {OVERSHOOT_LABELS[c.a]} vs {OVERSHOOT_LABELS[c.b]} | {c.scope} | {c.n} | {rho} |")
    return "\n".join(rows)
