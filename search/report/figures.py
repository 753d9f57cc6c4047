"""The report's figures, drawn on ``matplotlib.figure.Figure`` (no pyplot state, no backend switch at import):
optimisation history, parameter importances, the frac × coeff heatmap, the Pareto front, purity (on-target
gain against off-target KL, by source, with its Pareto front), length vs strength,
the overshoot grid (heatmaps per metric and mask, and each metric against the effective coefficient),
and the winner's curse (each selection contender's objective on search, validation and test).

Each function writes one PNG and returns its path, or None when the study has nothing to show.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import ScalarFormatter
from optuna.trial import FrozenTrial, TrialState

from search import params
from search.analysis.length import LengthReport
from search.analysis.overshoot import LABELS as OVERSHOOT_LABELS
from search.analysis.overshoot import METRICS as OVERSHOOT_METRICS
from search.analysis.overshoot import OvershootReport
from search.analysis.purity import PurityPoint, pareto_front
from search.analysis.select import Selection

logger = logging.getLogger(__name__)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def fig_history(study: optuna.Study, path: Path) -> Path | None:
    trials = _complete(study)
    if not trials or len(study.directions) > 1:
        return None
    xs = [t.number for t in trials]
    ys = [t.values[0] for t in trials]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
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
    fig = Figure(figsize=(6, 0.4 * len(names) + 1.2))
    ax = fig.subplots()
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


def _distinct_labels(values: list[float]) -> list[str]:
    """Tick labels with 2 decimals, or as many more as it takes for neighbouring values to read differently."""
    for digits in range(2, 6):
        labels = [f"{v:.{digits}f}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def fig_frac_coeff(study: optuna.Study, path: Path) -> Path | None:
    """Mean objective per (frac, coeff) cell: does 0.7 beat 1.0 at every coefficient?"""
    trials = [t for t in _complete(study) if params.FRAC in t.params and params.COEFF in t.params]
    if len(trials) < 4 or len(study.directions) > 1:
        return None
    fracs, fi = _bins([float(t.params[params.FRAC]) for t in trials])
    coeffs, ci = _bins([float(t.params[params.COEFF]) for t in trials])
    total = np.zeros((len(fracs), len(coeffs)))
    count = np.zeros_like(total)
    for t, a, b in zip(trials, fi, ci, strict=True):
        total[a, b] += t.values[0]
        count[a, b] += 1
    grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(coeffs)), [f"{c:.3g}" for c in coeffs], rotation=45)
    ax.set_yticks(range(len(fracs)), _distinct_labels(fracs))
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
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for on_front, color, label in ((False, "#bbbbbb", "trial"), (True, "#cc6677", "Pareto front")):
        pts = [t.values for t in trials if (t.number in front) == on_front]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, label=label)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=8)
    ax.set_title("Pareto front")
    return _save(fig, path)


def fig_purity(points: list[PurityPoint], path: Path) -> Path | None:
    """Each complete trial's on-target gain (concept_score) against its off-target KL, one colour per candidate
    source, the Pareto front as a step line; None with fewer than two points."""
    if len(points) < 2:
        return None
    fig = Figure(figsize=(7, 4.4))
    ax = fig.subplots()
    colors = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
    sources = sorted({p.source for p in points})
    for source, color in zip(sources, itertools.cycle(colors)):
        sel = [p for p in points if p.source == source]
        ax.scatter([p.kl for p in sel], [p.gain for p in sel], s=22, color=color, label=f"{source} ({len(sel)})")
    front = pareto_front(points)
    ax.step([p.kl for p in front], [p.gain for p in front], where="post", color="black", linewidth=1)
    ax.scatter(
        [p.kl for p in front],
        [p.gain for p in front],
        s=60,
        facecolors="none",
        edgecolors="black",
        label="Pareto front",
    )
    ax.set_xlabel("off-target KL (nats; lower is purer)")
    ax.set_ylabel("on-target gain (concept_score)")
    ax.set_title("Purity: gain against off-target damage (search split)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig_length(report: LengthReport, path: Path) -> Path:
    """Three panels against tokens per side: vector norm, objective at the fixed coefficient, best coefficient."""
    rows = report.rows
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    origins = sorted({r.origin for r in rows})
    for origin, marker in zip(origins, "osD^v<>", strict=False):
        sel = sorted((r for r in rows if r.origin == origin), key=lambda r: r.tokens)
        xs = [r.tokens for r in sel]
        style = {
            "marker": marker,
            "label": origin if len(origin) < 60 else origin[:57] + "...",
            "linestyle": "-" if origin != "as given" else "none",
        }
        axes[0].plot(xs, [r.norm for r in sel], **style)
        axes[1].plot(xs, [r.at_coeff.value for r in sel], **style)
        axes[2].plot(xs, [r.best_coeff for r in sel], **style)
    axes[1].axhline(report.unsteered.value, color="grey", linestyle=":", label="unsteered")
    titles = (
        "vector norm (all positions)",
        f"held-out objective at coeff {report.coeff:g}",
        "best coefficient (grid, search split)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("tokens per side (longer side)")
        ax.set_title(title, fontsize=10)
    axes[2].set_yscale("log", base=2)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def fig_selection(selection: Selection, path: Path) -> Path | None:
    """Each contender's objective on the search, validation and test splits, one line each: search candidates
    fall from the search split to the others (the winner's curse); hand-written pairs are drawn dashed."""
    shown = [c for c in selection.contenders if c.search is not None]
    if not shown:
        return None
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    for c in shown:
        ys = [c.search, c.validation.objective, c.test.objective if c.test is not None else None]
        xs = [i for i, y in enumerate(ys) if y is not None]
        vals = [float(y) for y in ys if y is not None]
        winner = c.name == selection.winner
        ax.plot(
            xs,
            vals,
            marker="o",
            linestyle="--" if c.kind == "tuned" else "-",
            linewidth=2.5 if winner else 1.2,
            color="#cc6677" if c.kind == "tuned" else "#4477aa",
            alpha=1.0 if winner else 0.6,
            label=("winner: " if winner else "") + (c.name if len(c.name) <= 60 else c.name[:57] + "..."),
        )
    ax.set_xticks([0, 1, 2], ["search", "validation", "test"])
    ax.set_ylabel("objective")
    ax.set_title("Selection: search-split values fall on new prompts (winner's curse)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # beside, not over, the lines
    return _save(fig, path)


def _grid_panels(report: OvershootReport) -> list[tuple[int, str]]:
    return [(layer, mask) for layer in report.layers for mask in report.masks]


def fig_overshoot(report: OvershootReport, path: Path) -> Path:
    """frac × coefficient heatmaps side by side: one column per metric (wedding-word rate, BERTScore F1, fluency
    part), one row per layer and mask (first-k; random: the mean over mask seeds). Each column has one colour
    scale for all its rows, so first-k and random compare by colour; the best frac of each coefficient is boxed."""
    panels = _grid_panels(report)
    fig = Figure(
        figsize=(4.1 * len(OVERSHOOT_METRICS), max(0.42 * len(report.fracs), 1.7) * len(panels) + 1.4),
        layout="constrained",
    )
    axes = fig.subplots(len(panels), len(OVERSHOOT_METRICS), squeeze=False)
    for col, metric in enumerate(OVERSHOOT_METRICS):
        values = {
            (layer, mask): np.array(
                [[report.value(layer, c, f, mask, metric) for c in report.coeffs] for f in report.fracs]
            )
            for layer, mask in panels
        }
        lo = min(float(v.min()) for v in values.values())
        hi = max(float(v.max()) for v in values.values())
        for row, (layer, mask) in enumerate(panels):
            ax, grid = axes[row, col], values[(layer, mask)]
            im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
            ax.set_xticks(range(len(report.coeffs)), [f"{c:g}" for c in report.coeffs], fontsize=8)
            ax.set_yticks(range(len(report.fracs)), [f"{f:g}" for f in report.fracs], fontsize=8)
            mid = (lo + hi) / 2
            for a in range(len(report.fracs)):
                for b in range(len(report.coeffs)):
                    ax.text(
                        b,
                        a,
                        f"{grid[a, b]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7.5,
                        color="black" if grid[a, b] > mid else "white",
                    )
            for b in range(len(report.coeffs)):
                a = max(range(len(report.fracs)), key=lambda i: (float(grid[i, b]), report.fracs[i]))  # noqa: B023
                ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, edgecolor="#ee3377", linewidth=1.8))
            if row == 0:
                ax.set_title(OVERSHOOT_LABELS[metric], fontsize=11)
            if col == 0:
                what = "first-k dims" if mask == "first" else f"random dims\n(mean of {len(report.mask_seeds)} seeds)"
                ax.set_ylabel(f"layer {layer}, {what}\nfrac of dims", fontsize=8.5)
            if row == len(panels) - 1:
                ax.set_xlabel("coefficient", fontsize=8)
        cbar = fig.colorbar(im, ax=list(axes[:, col]), shrink=0.9, pad=0.02)
        base = report.unsteered.metrics[metric].mean
        cbar.set_label(f"{OVERSHOOT_LABELS[metric]} (unsteered {base:.2f})", fontsize=8)
        cbar.ax.axhline(base, color="#ee3377", linewidth=1.5)
    fig.suptitle(
        f"{report.pair[0]!r} / {report.pair[1]!r}: frac × coefficient ({report.prompts} prompts × {report.samples} "
        f"sample(s) a cell, {report.split} split; box: best frac per coefficient)",
        fontsize=10,
    )
    fig.savefig(path, dpi=90)
    return path


def fig_overshoot_norm(report: OvershootReport, path: Path) -> Path:
    """Each metric against the effective coefficient (coefficient × the share of the vector's norm the mask
    keeps), one row per layer: if a fraction acts only as a smaller coefficient, every frac and both masks lie on
    one curve."""
    fig = Figure(figsize=(4.1 * len(OVERSHOOT_METRICS), 3.0 * len(report.layers) + 0.6))
    axes = fig.subplots(len(report.layers), len(OVERSHOOT_METRICS), squeeze=False)
    colours = dict(zip(report.fracs, ["#332288", "#117733", "#ddaa33", "#cc6677", "#000000", "#88ccee"], strict=False))
    for row, layer in enumerate(report.layers):
        for col, metric in enumerate(OVERSHOOT_METRICS):
            ax = axes[row, col]
            for frac in report.fracs:
                for mask, marker, style in (("first", "o", "-"), ("random", "x", "none")):
                    cells = sorted(
                        (c for c in report.cells if (c.layer, c.frac, c.mask) == (layer, frac, mask)),
                        key=lambda c: c.effective_coeff,
                    )
                    if cells:
                        ax.plot(
                            [c.effective_coeff for c in cells],
                            [c.evaluation.metrics[metric].mean for c in cells],
                            marker=marker,
                            linestyle=style,
                            color=colours.get(frac, "grey"),
                            markersize=5,
                            label=f"frac {frac:g}" if mask == "first" else None,
                        )
            ax.axhline(report.unsteered.metrics[metric].mean, color="grey", linestyle=":", linewidth=1)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_title(f"L{layer}: {OVERSHOOT_LABELS[metric]}", fontsize=9)
            if row == len(report.layers) - 1:
                ax.set_xlabel("effective coefficient (coeff × kept norm share)", fontsize=8)
    axes[0, 0].legend(fontsize=7, title="o first-k, x random", title_fontsize=7)
    fig.suptitle("Is a fraction just a smaller coefficient? (dotted: unsteered)", fontsize=10)
    return _save(fig, path)
