"""The report's sections, as Markdown lines: the study's (summary, figures, best vs hand-written, example
completions) and one per analysis whose result the run folder holds.

Every analysis section has the same small shape, ``Section = (run_dir, figs_dir) -> lines``: it loads its
analysis's typed result from the run folder and renders it; a folder without that result gives no lines.
Producers never import this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.adversarial import load_runs
from search.analysis.compare import Comparison
from search.analysis.distill import DistillReport
from search.analysis.evaluation import SHOWN_METRICS
from search.analysis.length import LengthReport
from search.analysis.overshoot import OvershootReport
from search.analysis.purity import purity_points
from search.analysis.select import Selection
from search.report.figures import (
    fig_frac_coeff,
    fig_history,
    fig_importances,
    fig_length,
    fig_overshoot,
    fig_overshoot_norm,
    fig_pareto,
    fig_purity,
    fig_selection,
)
from search.report.tables import (
    comparison_table,
    distill_table,
    length_table,
    overshoot_correlations,
    overshoot_table,
    purity_table,
    selection_table,
    verdict_text,
)
from search.space import AdditionChoice

Section = Callable[[Path, Path], list[str]]


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]


def _completions(run_dir: Path, number: int, limit: int) -> list[str]:
    f = run_dir / "completions" / f"trial_{number:05d}.jsonl"
    if not f.exists():
        return []
    rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows if r["prompt_index"] == 0][:limit]


def _example_columns(
    run_dir: Path, study: optuna.Study, best: dict[str, Any], comparison: Comparison | None, limit: int = 4
) -> list[tuple[str, list[str]]]:
    """Unsteered, the first hand-written baseline and the best found, side by side (first prompt's samples).

    From the held-out comparison when it exists, else from the search trials' completions."""
    if comparison:
        ex = comparison.examples
        picks = [("unsteered", "unsteered"), ("hand-written", "hand-written"), ("best", "best found")]
        cols = []
        for prefix, title in picks:
            name = next((k for k in ex if k.startswith(prefix)), None)
            if name is not None:
                cols.append((f"{title} (held-out)", list(ex[name][:limit])))
        return cols
    cols = []
    baselines = [t for t in _complete(study) if t.user_attrs.get("baseline")]
    if baselines:
        cols.append(("hand-written (search)", _completions(run_dir, baselines[0].number, limit)))
    if best.get("number") is not None:
        cols.append(("best found (search)", _completions(run_dir, best["number"], limit)))
    return [c for c in cols if c[1]]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return "–" if v is None else str(v)


def study_sections(run_dir: Path, study: optuna.Study, term_names: list[str], figs_dir: Path) -> list[str]:
    """Summary, figures, best vs hand-written (held-out once ``compare`` ran) and example completions."""
    states = [t.state.name.lower() for t in study.trials]
    best = json.loads((run_dir / "best.json").read_text()) if (run_dir / "best.json").exists() else {}
    comparison = Comparison.load(run_dir)

    md: list[str] = []
    md.append(f"{len(states)} trials: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) + ".")
    if best.get("value") is not None:
        md += ["", f"**Best (search split):** trial {best['number']}, objective {best['value']:.4f}.", ""]
        for add in best.get("candidate") or []:
            choice = AdditionChoice.from_record(add)
            extra = f", frac {choice.frac:.2f} ({choice.mask}), positions {choice.positions}" if not choice.fit else ""
            md.append(f"- {choice.describe()} ({choice.source}){extra}")
    figures = [
        ("Optimisation history", fig_history(study, figs_dir / "history.png")),
        ("Parameter importances", fig_importances(study, figs_dir / "importances.png")),
        ("frac × coeff", fig_frac_coeff(study, figs_dir / "frac_coeff.png")),
        ("Pareto front", fig_pareto(study, figs_dir / "pareto.png", term_names)),
    ]
    for title, path in figures:
        if path is not None:
            md += ["", f"## {title}", "", f"![{title}](figures/{path.name})"]
    points = purity_points(study)
    purity = fig_purity(points, figs_dir / "purity.png")
    if purity is not None:
        md += ["", "## Purity: on-target gain per unit of off-target KL", ""]
        md.append(
            f"{len(points)} complete trials on the search split: gain is concept_score (BERTScore gain over "
            "unsteered, 1 at the gold passages), damage is KL(unsteered || steered) on the off-target prompts. "
            "The Pareto front (no trial has both more gain and less KL):"
        )
        md += ["", purity_table(points), "", f"![Purity](figures/{purity.name})"]

    selection = Selection.load(run_dir)
    if selection:
        md += ["", "## Selection on the validation split", ""]
        md.append(
            f"The top search trials and every hand-written pair at its tuned setting, re-evaluated on "
            f"{len(selection.prompts)} validation prompts, {selection.samples_per_prompt} samples each, seed "
            f"{selection.seed}. {selection.summary()}"
        )
        md += ["", selection_table(selection)]
        path = fig_selection(selection, figs_dir / "selection.png")
        if path is not None:
            md += ["", f"![Selection](figures/{path.name})"]

    md += ["", "## Best vs hand-written", ""]
    if comparison:
        md.append(
            f"Held-out (test) prompts ({len(comparison.prompts)}), held-out seed {comparison.seed}, held-out "
            f"gold passages; {comparison.samples_per_prompt} samples per prompt; mean "
            f"[95% bootstrap CI, {comparison.bootstrap_resamples} resamples]; differences are paired (same "
            'prompts and seeds): "beats" means the paired 95% CI lies above 0.'
        )
        md += ["", comparison_table(comparison)]
        verdict = verdict_text(comparison)
        if verdict:
            md += ["", verdict]
    else:
        md.append("Search split only (run `steersearch compare` for the held-out comparison with CIs).")
        md.append("")
        rows = [t for t in _complete(study) if t.user_attrs.get("baseline")]
        if best.get("number") is not None:
            rows += [t for t in _complete(study) if t.number == best["number"] and not t.user_attrs.get("baseline")]
        metrics = [m for m in SHOWN_METRICS if any(m in t.user_attrs.get("metrics", {}) for t in rows)]
        md.append("| trial | kind | objective | " + " | ".join(metrics) + " |")
        md.append("|---" * (len(metrics) + 3) + "|")
        for t in rows:
            kind = "hand-written" if t.user_attrs.get("baseline") else "best found"
            vals = [_fmt(t.user_attrs.get("metrics", {}).get(m)) for m in metrics]
            md.append(f"| {t.number} | {kind} | {_fmt(t.values[0])} | " + " | ".join(vals) + " |")

    md += ["", "## Example completions", ""]
    columns = _example_columns(run_dir, study, best, comparison)
    md.append("| " + " | ".join(name for name, _ in columns) + " |")
    md.append("|---" * len(columns) + "|")
    for i in range(min((len(texts) for _, texts in columns), default=0)):
        md.append("| " + " | ".join(texts[i].replace("|", "/").replace("\n", " ") for _, texts in columns) + " |")
    return md


def adversarial_section(run_dir: Path, figs_dir: Path) -> list[str]:
    runs = load_runs(run_dir)
    if not runs:
        return []
    md = ["", "## Adversarial pairs (GCG mutation)", ""]
    md.append(
        "Proxy: gold log-likelihood per token (search split) with the pair's vector at the baseline's layer "
        "and coefficient. Winners entered the study as pool pairs and were scored by the real objective."
    )
    md += ["", "| start | layer, coeff | restart | found | proxy start | proxy found | candidates scored |"]
    md.append("|---" * 7 + "|")
    for r in runs:
        md.append(
            f"| {r.start[0]!r} / {r.start[1]!r} | L{r.layer}, c{r.coeff:g} | {r.restart} | "
            f"{r.best[0]!r} / {r.best[1]!r} | {r.proxy_start:.3f} | {r.proxy_best:.3f} | {r.evaluated} |"
        )
    return md


def distill_section(run_dir: Path, figs_dir: Path) -> list[str]:
    report = DistillReport.load(run_dir)
    if report is None:
        return []
    md = ["", "## Distillation into short pairs", ""]
    md.append(
        "Short pairs searched by cosine to the target vector (position-summed, or position by position where "
        "the target says so, at the target's layer), added at the projection coefficient times a multiplier, "
        "or at an absolute coefficient (distill.coeffs), whichever is best on the search split; objective and "
        "BERTScore F1 [95% CI] on the held-out split. Effect "
        "kept = (short - unsteered) / (target - unsteered) of the objective."
    )
    return [*md, "", distill_table(report)]


def length_section(run_dir: Path, figs_dir: Path) -> list[str]:
    report = LengthReport.load(run_dir)
    if report is None:
        return []
    path = fig_length(report, figs_dir / "length.png")
    md = ["", "## Length vs strength", ""]
    md.append(
        f"Layer {report.layer}, positions {report.positions}. The best coefficient is chosen on the "
        f"search split from {list(report.coeffs)}; objectives are held-out."
    )
    return [*md, "", length_table(report), "", f"![Length vs strength](figures/{path.name})"]


def overshoot_section(run_dir: Path, figs_dir: Path) -> list[str]:
    report = OvershootReport.load(run_dir)
    if report is None:
        return []
    heat = fig_overshoot(report, figs_dir / "overshoot.png")
    norm = fig_overshoot_norm(report, figs_dir / "overshoot_norm.png")
    md = ["", "## Overshoot: frac × coefficient, first-k and random dimensions", ""]
    md.append(
        f"{report.pair[0]!r} / {report.pair[1]!r} at positions {report.positions}; every cell "
        f"{report.prompts} {report.split} prompts × {report.samples} sample(s) on the same prompts and seeds (paired), "
        f"random masks with seeds {list(report.mask_seeds)}; mean [95% bootstrap CI]; differences from frac "
        f"{report.reference:g} are paired. Measured in {report.seconds / 60:.1f} min; every cell in "
        f"[{OvershootReport.CSV}]({OvershootReport.CSV})."
    )
    md += ["", f"![Overshoot heatmaps](figures/{heat.name})", "", f"![Effective coefficient](figures/{norm.name})"]
    md += ["", "### What it shows", ""] + [f"- {s}" for s in report.statements]
    md += ["", overshoot_correlations(report), "", overshoot_table(report)]
    return md


ANALYSIS_SECTIONS: tuple[Section, ...] = (adversarial_section, distill_section, length_section, overshoot_section)
