from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.analysis.purity import PurityPoint, pareto_front, purity_points
from search.report.figures import fig_purity
from search.report.tables import purity_table


def _trial(gain: float | None, kl: float | None, source: str = "template", **kw: object) -> optuna.trial.FrozenTrial:
    attrs: dict[str, object] = {"candidate": [{"kind": "pair", "source": source}], "label": f"{source} {gain}"}
    if gain is not None:
        attrs["metric_concept_score"] = gain
    if kl is not None:
        attrs["metric_kl"] = kl
    return create_trial(
        value=0.0,
        params={"coeff": 1.0},
        distributions={"coeff": FloatDistribution(0.1, 10.0)},
        user_attrs=attrs,
        **kw,  # type: ignore[arg-type]
    )


def test_points_skip_trials_without_both_metrics_or_not_complete() -> None:
    study = optuna.create_study(direction="maximize")
    for t in (
        _trial(0.5, 1.0, "hand-written"),
        _trial(0.4, None),
        _trial(None, 0.2),
        _trial(0.9, 0.1, state=TrialState.PRUNED),
        _trial(0.6, 2.0, "adversarial"),
    ):
        study.add_trial(t)
    points = purity_points(study)
    assert [(p.number, p.source, p.gain, p.kl) for p in points] == [
        (0, "hand-written", 0.5, 1.0),
        (4, "adversarial", 0.6, 2.0),
    ]
    assert points[0].purity == pytest.approx(0.5) and points[1].purity == pytest.approx(0.3)


def test_front_keeps_only_undominated_points_by_increasing_kl() -> None:
    pts = [
        PurityPoint(0, "a", "x", gain=0.5, kl=1.0),
        PurityPoint(1, "b", "x", gain=0.4, kl=1.5),  # dominated by 0: less gain, more KL
        PurityPoint(2, "c", "y", gain=0.8, kl=3.0),
        PurityPoint(3, "d", "y", gain=0.1, kl=0.1),
        PurityPoint(4, "e", "x", gain=0.5, kl=1.0),  # the same as 0: the earlier trial stays
        PurityPoint(5, "f", "y", gain=0.8, kl=3.5),  # dominated by 2: equal gain, more KL
    ]
    assert [p.number for p in pareto_front(pts)] == [3, 0, 2]
    assert PurityPoint(6, "g", "x", gain=0.2, kl=0.0).purity == math.inf
    assert math.isnan(PurityPoint(7, "h", "x", gain=0.0, kl=0.0).purity)


def test_table_and_figure_show_the_front(tmp_path: Path) -> None:
    pts = [
        PurityPoint(0, "' weddings' / '' L18 c2", "hand-written", 0.5, 1.0),
        PurityPoint(1, "b", "distilled", 0.2, 2.0),
    ]
    table = purity_table(pts)
    assert table.count("\n") == 2 and "| 0 | ' weddings' / '' L18 c2 | hand-written | 0.500 | 1.000 | 0.500 |" in table
    path = fig_purity(pts, tmp_path / "purity.png")
    assert path is not None and path.stat().st_size > 5000
    assert fig_purity(pts[:1], tmp_path / "one.png") is None


def test_report_page_renders_bold_cells_and_scrolls_wide_tables(tmp_path: Path) -> None:
    from search.report.page import _html

    page = _html("Some **bold** text.\n\n| a | b |\n|---|---|\n| **winner**: x | 1 |\n| a ** b | 2 |", tmp_path)
    assert "<p>Some <b>bold</b> text.</p>" in page
    assert "<td><b>winner</b>: x</td>" in page and "<td>a ** b</td>" in page  # a lone ** stays
    assert "overflow-x:auto" in page
