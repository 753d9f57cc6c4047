"""steer_score: concept, fluency and off-target parts combined so that broken text cannot buy concept."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives import Objective, ObjectiveSpec, Term
from objectives.steer_score import Calibration, SteerSpec, steer_parts

CAL = Calibration(f1_unsteered=0.40, f1_gold=0.60, ppl_unsteered=20.0, rep_unsteered=0.02)

FLUENT = {"bertscore_f1": 0.50, "completion_ppl": 24.0, "rep_rate": 0.03, "kl": 0.3}
"""A fluent on-topic candidate: half-way to the gold set, slightly more perplexing than unsteered."""

DEGENERATE = {"bertscore_f1": 0.58, "completion_ppl": 6.0, "rep_rate": 0.85, "kl": 0.3}
"""A repeated keyword: close to the gold set by BERTScore, and predictable (low perplexity) because it loops."""


def test_a_repeated_keyword_scores_below_a_fluent_on_topic_candidate() -> None:
    fluent, degenerate = steer_parts(FLUENT, CAL), steer_parts(DEGENERATE, CAL)
    assert degenerate["concept_score"] > fluent["concept_score"]  # it is "more on topic" by BERTScore
    assert degenerate["fluency_score"] == 0.0 and degenerate["steer_score"] == 0.0
    assert fluent["steer_score"] > 0.5
    # BERTScore alone (the quickstart's objective) prefers the degenerate text
    plain = Objective(ObjectiveSpec(terms=(Term("bertscore_f1"),)))
    assert plain.value(DEGENERATE) > plain.value(FLUENT)  # type: ignore[operator]


def test_parts_follow_their_anchors() -> None:
    spec = SteerSpec(ppl_factor=4.0, rep_span=0.5, kl_max=1.0)
    at_unsteered = steer_parts({"bertscore_f1": 0.40, "completion_ppl": 20.0, "rep_rate": 0.02, "kl": 0.0}, CAL, spec)
    assert at_unsteered["concept_score"] == 0.0 and at_unsteered["steer_score"] == 0.0  # no concept, no score
    assert at_unsteered["fluency_score"] == 1.0 and at_unsteered["offtarget_score"] == 1.0
    ideal = steer_parts({"bertscore_f1": 0.70, "completion_ppl": 10.0, "rep_rate": 0.0, "kl": 0.0}, CAL, spec)
    assert ideal == {"concept_score": 1.0, "fluency_score": 1.0, "offtarget_score": 1.0, "steer_score": 1.0}
    half = steer_parts({"bertscore_f1": 0.50, "completion_ppl": 40.0, "rep_rate": 0.02, "kl": 0.5}, CAL, spec)
    assert half["concept_score"] == pytest.approx(0.5) and half["fluency_score"] == pytest.approx(0.5)
    assert half["offtarget_score"] == pytest.approx(0.5) and half["steer_score"] == pytest.approx(0.5)
    broken = steer_parts({"bertscore_f1": 0.60, "completion_ppl": 80.0, "rep_rate": 0.02, "kl": 0.0}, CAL, spec)
    assert broken["fluency_score"] == 0.0 and broken["steer_score"] == 0.0  # 4x perplexity is zero fluency


def test_bad_anchors_are_refused() -> None:
    with pytest.raises(ValueError, match="does not tell the concept apart"):
        Calibration(f1_unsteered=0.5, f1_gold=0.5, ppl_unsteered=20.0, rep_unsteered=0.0)
    with pytest.raises(ValueError, match="ppl_factor"):
        SteerSpec(ppl_factor=1.0)
    with pytest.raises(KeyError, match="completion_ppl"):
        steer_parts({"bertscore_f1": 0.5, "rep_rate": 0.0, "kl": 0.0}, CAL)


def test_a_search_on_steer_score_records_its_parts(tiny: object, tmp_path: Path) -> None:
    """The study's objective is steer_score; every trial records the three parts and completion perplexity,
    and compare reports them with CIs on the test split."""
    from objectives.testing import FakeBertScorer
    from search.analysis.compare import run_compare
    from search.config import load_config
    from search.run import run_search
    from search.session import Scorers
    from tests.helpers import SMALL_CONFIG

    text = SMALL_CONFIG.replace(
        "  terms: [{metric: bertscore_f1}]\n  constraints: [{metric: ppl_ratio, max: 1.5}]",
        "  terms: [{metric: steer_score}]\n  steer: {kl_max: 2.0}",
    )
    (tmp_path / "exp.yaml").write_text(text + "compare: {n: 2, bootstrap: 30}\nselect: {n: 2, top_k: 1}\n")
    cfg = load_config(tmp_path / "exp.yaml")
    scorers = Scorers(bert=FakeBertScorer())
    study = run_search(cfg, out=tmp_path / "r", model=tiny, scorers=scorers, progress=False)  # type: ignore[arg-type]
    for t in study.trials:
        metrics = t.user_attrs["metrics"]
        assert {"concept_score", "fluency_score", "offtarget_score", "steer_score", "completion_ppl"} <= set(metrics)
        assert t.value == pytest.approx(metrics["steer_score"])
    comparison = run_compare(cfg, tmp_path / "r", model=tiny, scorers=scorers)  # type: ignore[arg-type]
    unsteered = comparison.methods["unsteered"]
    assert unsteered.metrics["concept_score"].mean == 0.0  # the test split's own unsteered anchor
    assert unsteered.metrics["fluency_score"].mean == 1.0 and unsteered.objective == 0.0
    for e in comparison.methods.values():
        s = e.metrics["steer_score"]
        assert s.lo <= s.mean <= s.hi and e.objective == pytest.approx(s.mean)


def test_completion_perplexity_skips_empty_completions(tiny: object) -> None:
    from objectives import EvalData, Evaluator

    ev = Evaluator({"completion_ppl"}, EvalData(gold=("The bride smiled.",)))
    items = ev.completion_items(tiny, ["I said", "I said"], ["", " that the bus was late"])  # type: ignore[arg-type]
    both = items["completion_ppl"].value
    alone = ev.completion_items(tiny, ["I said"], [" that the bus was late"])["completion_ppl"].value  # type: ignore[arg-type]
    assert both == pytest.approx(alone) and 1 < both < float("inf")
    assert ev.completion_items(tiny, ["I said"], [""])["completion_ppl"].value == float("inf")  # type: ignore[arg-type]


def test_completion_perplexity_is_the_same_in_passes_of_any_size(tiny: object) -> None:
    """Completions are scored ROWS_PER_PASS at a time (one pass over hundreds of completions held ~10 GB of
    logits); how they are split into passes does not change the value."""
    from objectives import EvalData, Evaluator

    ev = Evaluator({"completion_ppl"}, EvalData(gold=("The bride smiled.",)))
    prompts = ["I said", "The train was late, so", "Here is how to"] * 3
    texts = [" that the bus was late", " we walked home", " bake bread at home", "", " hello"] + [" ok then"] * 4
    one = ev.completion_items_many(tiny, [(prompts, texts)], rows_per_pass=100)[0]["completion_ppl"]  # type: ignore[arg-type]
    small = ev.completion_items_many(tiny, [(prompts, texts)], rows_per_pass=2)[0]["completion_ppl"]  # type: ignore[arg-type]
    assert small.value == pytest.approx(one.value, rel=1e-5)
    assert ev.completion_items(tiny, prompts, texts)["completion_ppl"].value == pytest.approx(one.value, rel=1e-5)  # type: ignore[arg-type]
