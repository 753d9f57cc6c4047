"""``interactive.html``: Optuna's own plotly figures for a study, in one self-contained page.

Optimisation history, parameter importances, the frac × coeff contour, the Pareto front and the
intermediate values (pruning reports), each only where it applies. plotly.js is inlined once, at the top of
the page, and nothing is loaded from the network, so the page works offline (also straight from a copied
run folder). The static PNGs of ``report.html`` stay; this page sits beside it and is linked from it.
"""

from __future__ import annotations

import functools
import html
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import params
from search.outputs import write_text

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

logger = logging.getLogger(__name__)

INTERACTIVE = "interactive.html"
"""The page's name in the run folder."""

PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}
"""plotly.js 4 shows a "Share chart" button (an upload to Plotly's cloud) unless told not to: nothing here leaves
the machine."""


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]


def _varies(trials: list[FrozenTrial], name: str) -> bool:
    return len({t.params[name] for t in trials if name in t.params}) > 1


def _names(study: optuna.Study, term_names: list[str]) -> list[str]:
    """One name per objective value: the study's metric names, else the config's terms, else ``objective``."""
    if study.metric_names and len(study.metric_names) == len(study.directions):
        return list(study.metric_names)
    if len(term_names) == len(study.directions) > 1:
        return list(term_names)
    return [f"objective {i}" for i in range(len(study.directions))] if len(study.directions) > 1 else ["objective"]


def _targets(study: optuna.Study, names: list[str]) -> list[tuple[str, Callable[[FrozenTrial], float] | None]]:
    """``(name, target)`` per objective; a single-objective study plots its value (target None)."""
    if len(study.directions) == 1:
        return [(names[0], None)]
    return [(name, _value(i)) for i, name in enumerate(names)]


def _value(i: int) -> Callable[[FrozenTrial], float]:
    def target(t: FrozenTrial) -> float:
        return float(t.values[i])

    return target


def interactive_figures(study: optuna.Study, term_names: list[str]) -> list[tuple[str, str, Figure]]:
    """``(title, caption, figure)`` for each figure that applies to ``study``; a figure Optuna cannot draw
    (too few trials for importances, say) is skipped and logged."""
    import optuna.visualization as vis

    trials = _complete(study)
    if not trials:
        return []
    names = _names(study, term_names)
    multi = len(study.directions) > 1
    out: list[tuple[str, str, Figure]] = []

    def add(title: str, caption: str, make: Callable[[], Figure]) -> None:
        try:
            with warnings.catch_warnings():  # several plot functions are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                out.append((title, caption, make()))
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            logger.info("interactive report: no %s figure (%s)", title, err)

    for name, target in _targets(study, names):
        suffix = f": {name}" if multi else ""
        add(
            f"Optimisation history{suffix}",
            f"{name} of each finished trial{'' if multi else ', and the best so far'}.",
            functools.partial(vis.plot_optimization_history, study, target=target, target_name=name),
        )
    if len(trials) >= 4:
        # PED-ANOVA (as the static figure) ranks parameters by how they separate the best trials from the rest
        # in the study's direction; with a target (one objective of several) it assumes lower is better, so a
        # multi-objective study gets fANOVA (variance explained, direction-free).
        evaluator = (
            optuna.importance.FanovaImportanceEvaluator(seed=0)
            if multi
            else optuna.importance.PedAnovaImportanceEvaluator()
        )
        add(
            "Parameter importances",
            "How much each parameter matters for "
            + ("each objective (fANOVA, one bar per objective)." if multi else "the objective (PED-ANOVA)."),
            lambda: vis.plot_param_importances(study, evaluator=evaluator),
        )
    if _varies(trials, params.FRAC) and _varies(trials, params.COEFF):
        for (name, target), direction in zip(_targets(study, names), study.directions, strict=True):

            def contour(
                target: Callable[[FrozenTrial], float] | None = target,
                name: str = name,
                high_is_better: bool = direction == optuna.study.StudyDirection.MAXIMIZE,
            ) -> Figure:
                fig = vis.plot_contour(study, params=[params.FRAC, params.COEFF], target=target, target_name=name)
                # Darker is better on every contour (Optuna colours any target as if lower were better).
                return fig.update_traces(reversescale=not high_is_better, selector={"type": "contour"})

            add(
                f"frac × coeff{f': {name}' if multi else ''}",
                f"{name} over the fraction of residual dimensions steered and the coefficient (darker is better).",
                contour,
            )
    if multi and len(study.directions) in (2, 3):
        add(
            "Pareto front",
            "Every finished trial; the front holds those no other trial dominates (at least as good on every "
            "objective and better on one).",
            lambda: vis.plot_pareto_front(study, target_names=names),
        )
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        add(
            "Intermediate values",
            "The objective each trial reported after each fidelity rung but the last (x: samples per prompt); a "
            "pruner, if configured, stops trials whose early value falls behind.",
            lambda: vis.plot_intermediate_values(study),
        )
    return out


def _summary(study: optuna.Study) -> str:
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    return f"{len(states)} trials" + (f": {counts}" if counts else "") + "."


def _figure_html(fig: Figure, first: bool) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=first,  # plotly.js inlined once, with the first figure; never a CDN
            include_mathjax=False,
            config=PLOT_CONFIG,
            default_height="480px",
        )
    )


def interactive_page(study: optuna.Study, term_names: list[str]) -> str:
    """The whole page, as a string."""
    figures = interactive_figures(study, term_names)
    title = f"steersearch interactive report: {study.study_name}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(_summary(study))} Drag to zoom, double-click to reset, hover a point for its trial; "
        'the static report is <a href="report.html">report.html</a>.</p>',
    ]
    if not figures:
        body.append("<p>No finished trial yet: nothing to plot.</p>")
    for i, (name, caption, fig) in enumerate(figures):
        body += [f"<h2>{html.escape(name)}</h2>", f"<p>{html.escape(caption)}</p>", _figure_html(fig, i == 0)]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "h1{font-size:1.6em}h2{margin-top:1.6em}"
    )
    head = f"<head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"


def write_interactive(run_dir: Path, study: optuna.Study, term_names: list[str]) -> Path | None:
    """Write ``run_dir/interactive.html``; returns its path, or None where plotly is not installed."""
    import optuna.visualization as vis

    if not vis.is_available():
        logger.warning("plotly is not installed: no %s (pip install plotly)", INTERACTIVE)
        return None
    path = run_dir / INTERACTIVE
    write_text(path, interactive_page(study, term_names))
    return path
