"""The overshoot analysis (frac × coefficient, first-k and random masks): the grid is complete and paired, its
tests are the paired differences of its cells, the report and CLI render it, and batched measuring gives what
one-at-a-time measuring gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives.testing import FakeBertScorer
from search.analysis.analyze import run_analysis
from search.analysis.evaluation import Method, SplitEvaluator, paired_difference
from search.analysis.overshoot import (
    FIRST,
    RANDOM,
    OvershootReport,
    _trend,
    paired_mean_difference,
    spearman,
)
from search.cli import main
from search.config import ConfigError, load_config
from search.session import Scorers, load_data
from steering import Addition, MaskMode, SteeringVector, load_model
from steering.model import SteerableModel
from tests.helpers import DATA

GRID = f"""
name: ov
{DATA}generation: {{max_new_tokens: 4, n: 1}}
objective: {{terms: [{{metric: bertscore_f1}}]}}
compare: {{bootstrap: 30}}
overshoot: {{layers: [0, 1], coeffs: [2, 8], fracs: [0.5, 0.7, 1.0], mask_seeds: [0, 1], prompts: 3, samples: 2}}
"""


@pytest.fixture(scope="module")
def grid(tiny: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[OvershootReport, Path]:
    cfg_path = tmp_path_factory.mktemp("cfg") / "ov.yaml"
    cfg_path.write_text(GRID)
    out = tmp_path_factory.mktemp("run") / "ov"
    res = run_analysis(load_config(cfg_path), out, model=tiny, scorers=Scorers(bert=FakeBertScorer()))
    assert res.overshoot is not None and res.distill is None and res.length is None
    return res.overshoot, out


def test_the_grid_is_complete_and_frac_one_is_measured_once(grid: tuple[OvershootReport, Path]) -> None:
    r, _ = grid
    # per layer and coeff: first-k at 3 fracs, random at the 2 fracs below 1 with 2 seeds each
    assert len(r.cells) == 2 * 2 * (3 + 2 * 2)
    assert not [c for c in r.cells if c.mask == RANDOM and c.frac == 1.0]
    assert r.cells_at(0, 2.0, 1.0, RANDOM) == r.cells_at(0, 2.0, 1.0, FIRST)
    assert len(r.cells_at(1, 8.0, 0.5, RANDOM)) == 2 and r.prompts == 3 and r.samples == 2
    for c in r.cells:  # the mask keeps part of the norm; all of it at frac 1
        assert (c.norm_ratio == pytest.approx(1.0)) if c.frac == 1.0 else 0 < c.norm_ratio < 1
        assert c.effective_coeff == pytest.approx(c.coeff * c.norm_ratio)
        assert set(c.evaluation.metrics) >= {"keyword_rate", "bertscore_f1", "fluency_score"}
        assert c.evaluation.metrics["bertscore_f1"].lo <= c.evaluation.metrics["bertscore_f1"].mean


def test_tests_are_paired_differences_of_the_cells(grid: tuple[OvershootReport, Path]) -> None:
    r, _ = grid
    first = [t for t in r.frac_tests if t.mask == FIRST]
    assert {(t.layer, t.coeff, t.frac) for t in first} == {(la, c, 0.7) for la in (0, 1) for c in (2.0, 8.0)}
    for t in r.frac_tests:
        want = r.value(t.layer, t.coeff, t.frac, t.mask, t.metric) - r.value(t.layer, t.coeff, 1.0, FIRST, t.metric)
        assert t.paired.diff.mean == pytest.approx(want, abs=1e-9)
        assert t.paired.diff.lo <= t.paired.diff.mean + 1e-9 <= t.paired.diff.hi + 2e-9
    assert len(r.mask_tests) == 2 * 3 * 2 * 2  # layers x metrics x coeffs x fracs below 1
    for t in r.mask_tests:
        want = r.value(t.layer, t.coeff, t.frac, RANDOM, t.metric) - r.value(t.layer, t.coeff, t.frac, FIRST, t.metric)
        assert t.paired.diff.mean == pytest.approx(want, abs=1e-9)
    assert {c.scope for c in r.correlations} == {"all cells", "layer 0", "layer 1"}
    assert any("best frac (first-k) by coefficient" in s for s in r.statements)
    assert any(s.startswith("Spearman rank correlation") for s in r.statements)


def test_saved_loaded_csv_report_and_cli(grid: tuple[OvershootReport, Path], capsys: pytest.CaptureFixture) -> None:
    r, out = grid
    assert OvershootReport.load(out) == r
    lines = (out / OvershootReport.CSV).read_text().splitlines()
    assert len(lines) == 1 + 1 + len(r.cells) and lines[0].startswith("layer,coeff,frac,mask,mask_seed,norm_ratio")
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Overshoot: frac × coefficient" in md and "Spearman" in md and "| unsteered |" in md
    for name in ("overshoot.png", "overshoot_norm.png"):
        assert (out / "figures" / name).stat().st_size > 5000
    assert '<a href="overshoot.csv">' in (out / "report.html").read_text()


def test_measure_many_gives_what_measure_gives(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg_path = tmp_path / "ov.yaml"
    cfg_path.write_text(GRID)
    cfg = load_config(cfg_path)
    ev = SplitEvaluator(cfg, load_data(cfg), tiny, Scorers(bert=FakeBertScorer()), "search", n=2, prompts=3)
    vec = SteeringVector.from_pair(tiny, " weddings", "", 1)
    methods = [
        Method("a", [Addition(vec, 4.0, frac=0.5, mask=MaskMode.RANDOM, mask_seed=1)]),
        Method("none", []),
        Method("p", [Addition(vec, 2.0)], prefix="Weddings. "),
    ]
    together = ev.measure_many(methods)
    for method, got in zip(methods, together, strict=True):
        alone = ev.measure(method)
        assert got.texts == alone.texts and len(got.texts) == 3 * 2
        assert got.point() == pytest.approx(alone.point(), rel=1e-5, abs=1e-6)


def test_paired_mean_difference_is_paired_difference_for_one(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg_path = tmp_path / "ov.yaml"
    cfg_path.write_text(GRID)
    cfg = load_config(cfg_path)
    ev = SplitEvaluator(cfg, load_data(cfg), tiny, Scorers(bert=FakeBertScorer()), "search", n=2, prompts=3)
    vec = SteeringVector.from_pair(tiny, " weddings", "", 0)
    a, b = ev.measure_many([Method("a", [Addition(vec, 8.0)]), Method("b", [])])
    f1 = lambda p: p["bertscore_f1"]  # noqa: E731
    assert paired_mean_difference([a], b, f1, resamples=50, seed=3) == paired_difference(a, b, f1, resamples=50, seed=3)
    twice = paired_mean_difference([a, a], b, f1, resamples=50, seed=3)
    assert twice.diff.mean == pytest.approx(paired_difference(a, b, f1, resamples=50, seed=3).diff.mean)


def test_spearman_and_trend_words() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 1, 2, 2]) == pytest.approx(0.894427, rel=1e-5)  # ties share mean ranks
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])  # NaN: a constant side
    assert _trend([1.0, 1.0, 1.0], 1.0).startswith("always 1: no fraction")
    assert _trend([1.0, 0.85, 0.5], 1.0).startswith("falls")
    assert _trend([0.5, 1.0], 1.0).startswith("rises")
    assert _trend([0.7, 0.7], 1.0).startswith("always 0.7")
    assert _trend([1.0, 0.5, 1.0], 1.0) == "no monotone pattern"


def test_bad_overshoot_sections(tmp_path: Path) -> None:
    p = tmp_path / "b.yaml"
    for section, match in (
        ("{layers: [1], coeffs: [2], fracs: [0.5, 0.7]}", "reference"),
        ("{layers: [1], coeffs: [2], fracs: [0, 1]}", "fracs"),
        ("{layers: [], coeffs: [2]}", "layers"),
        ("{layers: [1], coeffs: [2], split: train}", "split"),
    ):
        p.write_text(f"overshoot: {section}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(p)


@pytest.mark.embedded
def test_overshoot_on_the_embedded_model(tmp_path: Path) -> None:
    """tiny-topics steers at layer 1 (README): the grid runs on it, the whole vector at coefficient 8 moves the
    wedding-word rate above unsteered, and a frac-0.3 mask keeps about sqrt(0.3) of the norm."""
    cfg_path = tmp_path / "ov.yaml"
    cfg_path.write_text(
        GRID.replace("max_new_tokens: 4, n: 1", "max_new_tokens: 20, n: 1, top_p: 0.3, freq_penalty: 1.0")
        .replace(
            "layers: [0, 1], coeffs: [2, 8], fracs: [0.5, 0.7, 1.0]",
            "layers: [1], coeffs: [8], fracs: [0.3, 1.0], compared: [0.3]",
        )
        .replace("prompts: 3, samples: 2", "prompts: 8, samples: 4")
    )
    res = run_analysis(
        load_config(cfg_path), tmp_path / "run", model=load_model(), scorers=Scorers(bert=FakeBertScorer())
    )
    r = res.overshoot
    assert r is not None and len(r.cells) == 1 + 1 + 2
    whole = r.value(1, 8.0, 1.0, FIRST, "keyword_rate")
    assert whole > r.unsteered.metrics["keyword_rate"].mean + 0.1
    for c in r.cells:
        if c.frac == 0.3:
            assert c.norm_ratio == pytest.approx(0.3**0.5, abs=0.15)
