from __future__ import annotations

import pytest

from objectives.compose import Constraint, Objective, ObjectiveSpec, Term


def test_weighted_sum_with_penalty() -> None:
    spec = ObjectiveSpec(
        terms=(Term("bertscore_f1", 1.0), Term("rep_rate", -0.5)),
        constraints=(Constraint("ppl_ratio", max=1.2, penalty=10.0),),
    )
    obj = Objective(spec)
    assert obj.metrics == {"bertscore_f1", "rep_rate", "ppl_ratio"}
    assert obj.value({"bertscore_f1": 0.6, "rep_rate": 0.2, "ppl_ratio": 1.1}) == pytest.approx(0.5)
    assert obj.value({"bertscore_f1": 0.6, "rep_rate": 0.2, "ppl_ratio": 1.3}) == pytest.approx(-0.5)
    assert obj.feasible({"bertscore_f1": 0, "rep_rate": 0, "ppl_ratio": 1.2})
    assert obj.directions == ["maximize"]


def test_min_constraint() -> None:
    c = Constraint("distinct_2", min=0.5, penalty=2.0)
    assert c.violation(0.3) == pytest.approx(0.2) and c.violation(0.7) == 0


def test_multi_objective_vector_and_directions() -> None:
    obj = Objective(ObjectiveSpec(kind="multi", terms=(Term("bertscore_f1"), Term("kl"))))
    assert obj.value({"bertscore_f1": 0.6, "kl": 0.1}) == (0.6, 0.1)
    assert obj.directions == ["maximize", "minimize"]


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric 'bleu'; known: bertscore_f1"):
        Term("bleu")
    with pytest.raises(ValueError, match="needs max or min"):
        Constraint("kl")
    with pytest.raises(ValueError, match="at least one term"):
        ObjectiveSpec(terms=())
    with pytest.raises(KeyError, match="'kl' was not measured"):
        Objective(ObjectiveSpec(terms=(Term("kl"),))).value({"bertscore_f1": 1.0})
