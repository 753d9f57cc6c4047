"""``report.md`` and ``report.html`` for a run, rebuilt from the study storage and the run folder.

Sections: summary, optimisation history, parameter importances, frac × coeff heatmap (where both vary),
Pareto front (multi-objective), best vs hand-written (held-out table with CIs once ``compare`` has run,
else the search-split metrics), and example completions side by side. Figures are PNGs in
``figures/`` and are embedded in the HTML, so the HTML file stands alone.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from search.outputs import write_text  # noqa: E402
from search.space import AdditionChoice  # noqa: E402

logger = logging.getLogger(__name__)

TABLE_METRICS = ("bertscore_f1", "embedding_sim", "keyword_rate", "ppl_ratio", "kl", "rep_rate")


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig_history(study: optuna.Study, path: Path) -> Path | None:
    trials = _complete(study)
    if not trials or len(study.directions) > 1:
        return None
    xs = [t.number for t in trials]
    ys = [t.values[0] for t in trials]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    base = [t.number for t in trials if t.user_attrs.get("baseline")]
    ax.scatter(xs, ys, s=14, color="#4477aa", label="trial")
    if base:
        ax.scatter(
            base,
            [t.values[0] for t in trials if t.user_attrs.get("baseline")],
            s=40,
            marker="*",
            color="#cc6677",
            label="hand-written",
        )
    ax.plot(xs, best, color="#228833", label="best so far")
    pruned = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))]
    ax.set_xlabel(f"trial ({len(pruned)} pruned, not shown)")
    ax.set_ylabel("objective")
    ax.legend(fontsize=8)
    ax.set_title("Optimisation history")
    return _save(fig, path)


def fig_importances(study: optuna.Study, path: Path) -> Path | None:
    trials = _complete(study)
    if len(trials) < 4 or len(study.directions) > 1:
        return None
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as err:  # e.g. too few distinct values
        logger.info("no parameter importances: %s", err)
        return None
    if not imp:
        return None
    names, vals = list(imp)[::-1], list(imp.values())[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    ax.barh(names, vals, color="#4477aa")
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_title("Parameter importances")
    return _save(fig, path)


def _bins(values: list[float], max_bins: int = 8) -> tuple[list[float], np.ndarray]:
    uniq = sorted(set(values))
    if len(uniq) <= max_bins:
        return uniq, np.array([uniq.index(v) for v in values])
    edges = np.quantile(values, np.linspace(0, 1, max_bins + 1))
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max_bins - 1)
    centers = [(edges[i] + edges[i + 1]) / 2 for i in range(max_bins)]
    return centers, idx


def fig_frac_coeff(study: optuna.Study, path: Path) -> Path | None:
    """Mean objective per (frac, coeff) cell: does 0.7 beat 1.0 at every coefficient?"""
    trials = [t for t in _complete(study) if "frac" in t.params and "coeff" in t.params]
    if len(trials) < 4 or len(study.directions) > 1:
        return None
    fracs, fi = _bins([float(t.params["frac"]) for t in trials])
    coeffs, ci = _bins([float(t.params["coeff"]) for t in trials])
    total = np.zeros((len(fracs), len(coeffs)))
    count = np.zeros_like(total)
    for t, a, b in zip(trials, fi, ci, strict=True):
        total[a, b] += t.values[0]
        count[a, b] += 1
    grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(coeffs)), [f"{c:.3g}" for c in coeffs], rotation=45)
    ax.set_yticks(range(len(fracs)), [f"{f:.2f}" for f in fracs])
    ax.set_xlabel("coefficient")
    ax.set_ylabel("fraction of residual dims")
    for a in range(len(fracs)):
        for b in range(len(coeffs)):
            if count[a, b]:
                ax.text(b, a, f"{grid[a, b]:.3f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, label="mean objective")
    ax.set_title("frac × coeff")
    return _save(fig, path)


def fig_pareto(study: optuna.Study, path: Path, names: list[str]) -> Path | None:
    if len(study.directions) != 2:
        return None
    trials = _complete(study)
    if not trials:
        return None
    front = {t.number for t in study.best_trials}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for on_front, color, label in ((False, "#bbbbbb", "trial"), (True, "#cc6677", "Pareto front")):
        pts = [t.values for t in trials if (t.number in front) == on_front]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, label=label)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=8)
    ax.set_title("Pareto front")
    return _save(fig, path)


def _completions(run_dir: Path, number: int, limit: int) -> list[str]:
    f = run_dir / "completions" / f"trial_{number:05d}.jsonl"
    if not f.exists():
        return []
    rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows if r["prompt_index"] == 0][:limit]


def _example_columns(
    run_dir: Path, study: optuna.Study, best: dict[str, Any], comparison: dict[str, Any] | None, limit: int = 4
) -> list[tuple[str, list[str]]]:
    """Unsteered, the first hand-written baseline and the best found, side by side (first prompt's samples).

    From the held-out comparison when it exists, else from the search trials' completions."""
    if comparison:
        ex = comparison["examples"]
        picks = [("unsteered", "unsteered"), ("hand-written", "hand-written"), ("best", "best found")]
        cols = []
        for prefix, title in picks:
            name = next((k for k in ex if k.startswith(prefix)), None)
            if name is not None:
                cols.append((f"{title} (held-out)", ex[name][:limit]))
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


def _study_sections(run_dir: Path, study: optuna.Study, term_names: list[str], figs_dir: Path) -> list[str]:
    states = [t.state.name.lower() for t in study.trials]
    best = json.loads((run_dir / "best.json").read_text()) if (run_dir / "best.json").exists() else {}
    comparison = (
        json.loads((run_dir / "comparison.json").read_text()) if (run_dir / "comparison.json").exists() else None
    )

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

    md += ["", "## Best vs hand-written", ""]
    if comparison:
        from search.compare import table

        shown = [m for m in TABLE_METRICS if any(m in r["metrics"] for r in comparison["methods"].values())]
        md.append(
            f"Held-out prompts ({len(comparison['prompts'])}), held-out seed {comparison['seed']}, held-out "
            f"gold passages; {comparison['samples_per_prompt']} samples per prompt; mean "
            f"[95% bootstrap CI, {comparison['bootstrap_resamples']} resamples]."
        )
        md += ["", table(comparison, shown)]
    else:
        md.append("Search split only (run `steersearch compare` for the held-out comparison with CIs).")
        md.append("")
        rows = [t for t in _complete(study) if t.user_attrs.get("baseline")]
        if best.get("number") is not None:
            rows += [t for t in _complete(study) if t.number == best["number"] and not t.user_attrs.get("baseline")]
        metrics = [m for m in TABLE_METRICS if any(m in t.user_attrs.get("metrics", {}) for t in rows)]
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


def analysis_sections(run_dir: Path, figs_dir: Path) -> list[str]:
    """Adversarial runs (``adversarial.json``), distillation table (``distill.json``), and the
    length-vs-strength table and plot (``length.json``), for whichever the run folder holds."""
    from search.distill import distill_table
    from search.length import fig_length, length_table

    md: list[str] = []
    if (run_dir / "adversarial.json").exists():
        runs = json.loads((run_dir / "adversarial.json").read_text())["runs"]
        md += ["", "## Adversarial pairs (GCG mutation)", ""]
        md.append(
            "Proxy: gold log-likelihood per token (search split) with the pair's vector at the baseline's layer "
            "and coefficient. Winners entered the study as pool pairs and were scored by the real objective."
        )
        md += ["", "| start | layer, coeff | restart | found | proxy start | proxy found | candidates scored |"]
        md.append("|---" * 7 + "|")
        for r in runs:
            md.append(
                f"| {r['start'][0]!r} / {r['start'][1]!r} | L{r['layer']}, c{r['coeff']:g} | {r['restart']} | "
                f"{r['best'][0]!r} / {r['best'][1]!r} | {r['proxy_start']:.3f} | {r['proxy_best']:.3f} | "
                f"{r['evaluated']} |"
            )
    if (run_dir / "distill.json").exists():
        report = json.loads((run_dir / "distill.json").read_text())
        md += ["", "## Distillation into short pairs", ""]
        md.append(
            "Short pairs searched by cosine to the target vector (position-summed, at the target's layer), added "
            "at the projection coefficient times the multiplier best on the search split; objective and "
            "BERTScore F1 [95% CI] on the held-out split. Effect "
            "kept = (short - unsteered) / (target - unsteered) of the objective."
        )
        md += ["", distill_table(report)]
    if (run_dir / "length.json").exists():
        report = json.loads((run_dir / "length.json").read_text())
        path = fig_length(report, figs_dir / "length.png")
        md += ["", "## Length vs strength", ""]
        md.append(
            f"Layer {report['layer']}, positions {report['positions']}. The best coefficient is chosen on the "
            f"search split from {report['coeffs']}; objectives are held-out."
        )
        md += ["", length_table(report), "", f"![Length vs strength](figures/{path.name})"]
    return md


def build_report(run_dir: Path, study: optuna.Study | None, term_names: list[str]) -> tuple[str, str]:
    """Render ``(markdown, html)`` and write figures into ``run_dir/figures``. Without a study (an
    ``analyze`` run) only the analysis sections (distillation, length vs strength) are rendered."""
    figs_dir = run_dir / "figures"
    figs_dir.mkdir(parents=True, exist_ok=True)
    md: list[str] = [f"# steersearch report: {study.study_name if study is not None else run_dir.name}", ""]
    if study is not None:
        md += _study_sections(run_dir, study, term_names, figs_dir)
    md += analysis_sections(run_dir, figs_dir)
    markdown = "\n".join(md) + "\n"
    return markdown, _html(markdown, figs_dir)


def _html(markdown: str, figs_dir: Path) -> str:
    """A small markdown subset (headings, bullets, tables, images, bold) rendered to standalone HTML."""
    out: list[str] = []
    table_rows: list[list[str]] = []

    def flush() -> None:
        if table_rows:
            head, *body = table_rows
            out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
            out.append("</tbody></table>")
            table_rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table_rows.append(cells)
            continue
        flush()
        if line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            data = base64.b64encode((figs_dir.parent / name).read_bytes()).decode()
            out.append(f'<img alt="figure" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            text = html.escape(line)
            while "**" in text:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            out.append(f"<p>{text}</p>")
    flush()
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
        "vertical-align:top}th{background:#f3f3f3}img{max-width:100%;margin:1em 0}h1{font-size:1.6em}"
    )
    head = f"<head><meta charset='utf-8'><title>steersearch report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(out)}</body></html>\n"


def write_report(run_dir: Path, study: optuna.Study | None, term_names: list[str]) -> Path:
    markdown, page = build_report(run_dir, study, term_names)
    write_text(run_dir / "report.md", markdown)
    write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
