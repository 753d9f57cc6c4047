from __future__ import annotations

import pytest

from objectives.compose import Objective, ObjectiveSpec, Term
from objectives.evaluate import EvalData, Evaluator
from objectives.testing import FakeBertScorer
from steering.model import SteerableModel

DATA = EvalData(
    gold=("The bride and groom danced at the wedding.",),
    keywords=("wedding", "bride"),
    neutral_texts=("The bus was late this morning.",),
    off_target_prompts=("The capital of France is",),
    prompts=("I went up to my friend and said",),
)


def test_text_and_model_metrics(tiny: SteerableModel) -> None:
    metrics = {"bertscore_f1", "keyword_rate", "distinct_2", "ppl_ratio", "kl", "gold_loglik"}
    ev = Evaluator(metrics, DATA, bertscorer=FakeBertScorer())  # type: ignore[arg-type]
    raw = ev.evaluate(["the bride danced at the wedding", "it rained"], tiny, [])
    assert set(metrics) <= set(raw) and "ppl_steered" in raw
    assert raw["keyword_rate"] == 0.5 and raw["ppl_ratio"] == pytest.approx(1.0)
    obj = Objective(ObjectiveSpec(terms=(Term("bertscore_f1"), Term("kl", -1.0))))
    assert obj.value(raw) == pytest.approx(raw["bertscore_f1"] - raw["kl"])


def test_on_topic_beats_off_topic_with_fake_scorer() -> None:
    ev = Evaluator({"bertscore_f1"}, DATA, bertscorer=FakeBertScorer())  # type: ignore[arg-type]
    assert ev.evaluate(["the bride and groom danced"])["bertscore_f1"] > ev.evaluate(["it rained"])["bertscore_f1"]


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        Evaluator({"bleu"}, DATA)
    with pytest.raises(ValueError, match="need a bertscorer"):
        Evaluator({"bertscore_f1"}, DATA)
    with pytest.raises(ValueError, match="gold set is empty"):
        Evaluator({"distinct_2"}, EvalData(gold=()))
    with pytest.raises(ValueError, match="need the model"):
        Evaluator({"kl"}, DATA).evaluate(["x"])
    with pytest.raises(ValueError, match="no completions"):
        Evaluator({"distinct_2"}, DATA).evaluate([])
