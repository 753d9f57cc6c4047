"""Selection on the validation split, paired statistics and the tuned hand-written baselines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from objectives.items import list_mean
from search.analysis.evaluation import Evaluation, Interval, Measured, Paired, paired_difference, verdict
from search.config import BaselineSpec, TuneSpec
from search.study import tuning_grid


def _measured(values: list[float]) -> Measured:
    return Measured({"score": list_mean(values)}, [""] * len(values))


def _score(point: dict[str, float]) -> float:
    return point["score"]


def test_verdict_words_follow_the_ci() -> None:
    assert verdict(Interval(0.02, 0.01, 0.03)) == "beats"
    assert verdict(Interval(0.0, -0.01, 0.01)) == "ties"
    assert verdict(Interval(-0.02, -0.03, -0.01)) == "loses"
    assert verdict(Interval(0.02, 0.01, 0.03), higher_is_better=False) == "loses"  # e.g. perplexity ratio


def test_pairing_cancels_shared_noise() -> None:
    """Two methods whose items share large noise (same prompt, same seeds) and differ by a small constant:
    their separate CIs overlap, yet the paired CI of the difference excludes 0."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.2, 128).tolist()
    a = _measured([0.5 + x + 0.02 for x in noise])
    b = _measured([0.5 + x for x in noise])
    paired = paired_difference(a, b, _score, resamples=500, seed=0)
    assert paired.verdict == "beats" and paired.diff.mean == pytest.approx(0.02)
    assert paired.diff.lo == pytest.approx(0.02) and paired.diff.hi == pytest.approx(0.02)  # shared noise cancels
    unpaired = paired_difference(
        a, _measured(rng.permutation([0.5 + x for x in noise]).tolist()), _score, resamples=500, seed=0
    )
    assert unpaired.verdict == "ties"  # the same two value sets, the pairing broken: the difference drowns


def test_identical_methods_tie_at_zero() -> None:
    a = _measured([0.1, 0.5, 0.9, 0.3])
    assert paired_difference(a, a, _score, resamples=100, seed=0) == Paired(Interval(0.0, 0.0, 0.0), "ties")


def test_pairing_refuses_different_items() -> None:
    with pytest.raises(ValueError, match="different items"):
        paired_difference(_measured([0.1, 0.2]), _measured([0.1, 0.2, 0.3]), _score, resamples=10, seed=0)


def test_tuning_grid_covers_each_pair_once_with_the_written_setting_flagged() -> None:
    pair = ("I talk about weddings", "I do not")
    baselines = (BaselineSpec(pair, layer=1, coeff=4), BaselineSpec(pair, layer=0, coeff=4))
    grid = tuning_grid(baselines, TuneSpec(layers=(0, 1), coeffs=(2, 4)))
    settings = [(b.layer, b.coeff, written) for b, written in grid]
    assert settings == [(1, 4, True), (0, 4, True), (0, 2, False), (1, 2, False)]
    assert [(b.layer, b.coeff) for b, _ in tuning_grid(baselines, TuneSpec())] == [(1, 4), (0, 4)]


class FakeValidation:
    """A validation split whose measurements are given per method name (no model): selection's rule alone."""

    split = "validation"
    n, seed = 4, 2000

    def __init__(
        self, values: dict[str, list[float]], model: Any, ppl: dict[str, tuple[float, float]] | None = None
    ) -> None:
        self.values = values
        self.ppl = ppl or {}  # each method's ppl_ratio interval (lo, hi); default (1.0, 1.1)
        self.model = model
        self.data: Any = type("D", (), {"prompts": type("P", (), {"part": staticmethod(lambda s: ("p",))})()})()

    def measure(self, method: Any) -> Measured:
        prefix = method.name.split(":")[0].split(" (")[0]
        m = _measured(next(v for k, v in self.values.items() if k == prefix))
        m.items["ppl_lo_hi"] = list_mean(list(self.ppl.get(prefix, (1.0, 1.1))))  # carried to evaluation
        return m

    def evaluation(self, m: Measured) -> Evaluation:
        value = m.point()["score"]
        lo, hi = (m.items["ppl_lo_hi"].stat(np.array([i])) for i in (0, 1))
        return Evaluation({"score": Interval(value, value, value), "ppl_ratio": Interval(hi, lo, hi)}, {}, value)

    def paired(self, a: Measured, b: Measured) -> Paired:
        return paired_difference(a, b, _score, resamples=200, seed=0)


def _small_study(tiny: Any, tmp_path: Path) -> tuple[Any, Any]:
    """SMALL_CONFIG's search (top 1 selected, plus the best of each source) on the tiny model, and its config."""
    from objectives.testing import FakeBertScorer
    from search.config import load_config
    from search.run import run_search
    from search.session import Scorers
    from tests.helpers import SMALL_CONFIG

    (tmp_path / "exp.yaml").write_text(SMALL_CONFIG)
    cfg = load_config(tmp_path / "exp.yaml")
    cfg = dataclasses.replace(cfg, select=dataclasses.replace(cfg.select, top_k=1))
    study = run_search(cfg, out=tmp_path / "r", model=tiny, scorers=Scorers(bert=FakeBertScorer()), progress=False)
    return cfg, study


@pytest.mark.parametrize(("lead", "winner"), [(0.05, "search #1"), (0.0, "tuned hand-written")])
def test_a_candidate_displaces_the_tuned_pair_only_when_it_beats_it(
    tiny: Any, tmp_path: Path, lead: float, winner: str
) -> None:
    """The best search candidate wins only when its paired validation CI lies above the tuned pair's; a lead
    within noise leaves the tuned hand-written pair the winner."""
    from search.analysis.select import select_winner
    from search.vectors import VectorCache

    cfg, study = _small_study(tiny, tmp_path)
    rng = np.random.default_rng(1)
    base = (0.5 + rng.normal(0, 0.1, 64)).tolist()
    jitter = rng.normal(0, 0.01, 64).tolist()  # independent noise: a zero lead is a tie, not a win
    values = {
        "tuned hand-written": base,
        "search #1": [b + lead + j for b, j in zip(base, jitter, strict=True)],
        "best template": [b - 0.1 for b in base],
        "best hand-written": [b - 0.1 for b in base],
    }
    selection = select_winner(cfg, study, FakeValidation(values, tiny), VectorCache())  # type: ignore[arg-type]
    assert selection.winner.startswith(winner)
    assert selection.reference is not None and selection.reference.startswith("tuned hand-written")
    assert selection.paired is not None and selection.paired.verdict == ("beats" if lead else "ties")
    assert ("stays the winner" in selection.summary()) == (not lead)


def test_a_candidate_that_may_miss_a_constraint_is_passed_over(tiny: Any, tmp_path: Path) -> None:
    """search #1 leads on validation but its ppl_ratio CI reaches past the config's bound (1.5): the best
    candidate that clearly meets it is held against the tuned pair instead; if none does, the tuned pair stays."""
    from search.analysis.select import select_winner
    from search.vectors import VectorCache

    cfg, study = _small_study(tiny, tmp_path)
    rng = np.random.default_rng(1)
    base = (0.5 + rng.normal(0, 0.1, 64)).tolist()
    values = {
        "tuned hand-written": base,
        "search #1": [b + 0.2 for b in base],
        "best template": [b + 0.1 for b in base],
        "best hand-written": [b - 0.1 for b in base],
    }
    straddles = {"search #1": (1.3, 1.6)}
    selection = select_winner(cfg, study, FakeValidation(values, tiny, straddles), VectorCache())  # type: ignore[arg-type]
    assert selection.winner.startswith("best template") and selection.best_candidate == selection.winner
    assert [n.split(" (")[0] for n in selection.passed_over] == ["search #1"]
    assert "passed over" in selection.summary() and "it wins" in selection.summary()

    nobody = {"search #1": (1.3, 1.6), "best template": (1.4, 1.7), "best hand-written": (1.6, 2.0)}
    selection = select_winner(cfg, study, FakeValidation(values, tiny, nobody), VectorCache())  # type: ignore[arg-type]
    assert selection.winner.startswith("tuned hand-written")
    assert selection.best_candidate is not None and selection.best_candidate.startswith("search #1")
    assert selection.paired is not None and selection.paired.verdict == "beats"
    assert "does not clearly meet" in selection.summary()


def test_a_multi_objective_study_selects_from_its_pareto_front(tiny: Any, tmp_path: Path) -> None:
    from objectives.testing import FakeBertScorer
    from search.analysis.compare import run_compare
    from search.analysis.select import Selection
    from search.config import load_config
    from search.run import run_search
    from search.session import Scorers
    from tests.helpers import SMALL_CONFIG, config_variant

    text = config_variant(
        SMALL_CONFIG,
        ("  terms: [{metric: bertscore_f1}]\n", "  kind: multi\n  terms: [{metric: bertscore_f1}, {metric: kl}]\n"),
        ("  constraints: [{metric: ppl_ratio, max: 1.5}]\n", ""),
        ("seed: 0}", "seed: 0, sampler: nsga2}"),
    )
    (tmp_path / "exp.yaml").write_text(text + "compare: {n: 2, bootstrap: 20}\nselect: {n: 2, top_k: 2}\n")
    cfg = load_config(tmp_path / "exp.yaml")
    scorers = Scorers(bert=FakeBertScorer())
    run_search(cfg, out=tmp_path / "r", model=tiny, scorers=scorers, n_trials=4, progress=False)
    comparison = run_compare(cfg, tmp_path / "r", model=tiny, scorers=scorers)
    selection = Selection.load(tmp_path / "r")
    assert selection is not None and selection.rule == "maximin" and selection.paired is None
    assert any(c.name.startswith("Pareto #1") for c in selection.contenders)
    assert selection.winner in comparison.methods and comparison.winner == selection.winner
    assert comparison.paired == {} and all(c.test is not None for c in selection.contenders)
    assert selection.winner in selection.summary()


def test_a_validation_tie_goes_to_the_better_search_value() -> None:
    from search.analysis.select import Contender, best_on_validation

    def c(name: str, kind: str, search: float | None, val: float) -> Contender:
        return Contender(name, kind, 1, [], search, Evaluation({}, {}, val))  # type: ignore[arg-type]

    tied = [c("a", "tuned", 0.1, 0.0), c("b", "tuned", 0.7, 0.0), c("x", "candidate", 0.9, 0.5)]
    assert best_on_validation(tied, "tuned") == "b"  # both 0 on validation: the one that searched better
    assert best_on_validation([c("a", "tuned", None, 0.2), c("b", "tuned", 0.7, 0.1)], "tuned") == "a"
    assert best_on_validation(tied, "candidate") == "x" and best_on_validation(tied[:2], "candidate") is None
