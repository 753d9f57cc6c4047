from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
import torch

from objectives import EvalData, Evaluator, Objective, ObjectiveSpec, Term
from objectives.items import point
from objectives.testing import FakeBertScorer
from search.config.features import FidelitySpec
from search.config.space import FloatRange, IntRange, PairsSpec, SpaceSpec
from search.objective import CompletionSink, SteeringObjective
from search.space import Candidate, pair_pool
from steering import Addition, GenerationConfig, SteeringVector, generate
from steering.model import SteerableModel

POOL = pair_pool(PairsSpec(hand_written=(("The bride and the groom", ""), ("She hates the rain", "She loves"))))
DATA = EvalData(gold=("The bride and the groom danced at the wedding.",), neutral_texts=("The bus was late.",))
GEN = GenerationConfig(max_new_tokens=6, n=1)


def _objective(
    tiny: SteerableModel,
    tmp_path: Path,
    rungs=(1, 3),
    metrics=("bertscore_f1", "ppl_ratio"),
    fidelity: FidelitySpec | None = None,
    prompts=("I went up to my friend and said", "The other day"),
):
    ev = Evaluator(set(metrics), DATA, bertscorer=FakeBertScorer())  # type: ignore[arg-type]
    obj = Objective(ObjectiveSpec(terms=tuple(Term(m) for m in metrics if m != "ppl_ratio")))
    return SteeringObjective(
        model=tiny,
        evaluator=ev,
        objective=obj,
        space=SpaceSpec(layer=IntRange(0, 1), coeff=FloatRange(1.0, 8.0)),
        pool=POOL,
        prompts=list(prompts),
        generation=GEN,
        fidelity=fidelity or FidelitySpec(rungs),
        sink=CompletionSink(tmp_path / "completions"),
    )


def test_fixed_trial_drives_the_objective(tiny: SteerableModel, tmp_path: Path) -> None:
    objective = _objective(tiny, tmp_path)
    trial = optuna.trial.FixedTrial({"pair": POOL[0].label, "layer": 1, "coeff": 4.0}, number=7)
    value = objective(trial)
    metrics = trial.user_attrs["metrics"]
    assert value == pytest.approx(metrics["bertscore_f1"]) and "ppl_ratio" in metrics
    assert trial.user_attrs["candidate"][0]["pair"] == ["The bride and the groom", ""]
    lines = (tmp_path / "completions" / "trial_00007.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 3 and json.loads(lines[0])["prompt_index"] == 0


def test_pruned_trials_stop_after_their_rung(tiny: SteerableModel, tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    study.optimize(_objective(tiny, tmp_path), n_trials=2)
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert all(t.user_attrs["samples_per_prompt"] == 1 for t in study.trials)


def test_rungs_reuse_samples(tiny: SteerableModel, tmp_path: Path) -> None:
    """A survivor of rungs (1, 3) ends with exactly the completions of one 3-sample call: rung 2 adds
    samples 1 and 2 to rung 1's sample 0 instead of drawing three new ones."""
    objective = _objective(tiny, tmp_path, rungs=(1, 3))
    trial = optuna.trial.FixedTrial({"pair": POOL[0].label, "layer": 1, "coeff": 4.0}, number=3)
    objective(trial)
    lines = [json.loads(x) for x in (tmp_path / "completions" / "trial_00003.jsonl").read_text().splitlines()]
    got = [[r["text"] for r in lines if r["prompt_index"] == p] for p in range(2)]
    cand = Candidate.from_record(trial.user_attrs["candidate"])
    full = generate(tiny, objective.prompts, cand.steering(tiny, objective.vectors), dataclasses.replace(GEN, n=3))
    assert got == full
    fresh = generate(tiny, objective.prompts, cand.steering(tiny, objective.vectors), dataclasses.replace(GEN, n=2))
    assert [row[1:] for row in got] != fresh  # not merely n new samples: the rung continued the sample sequence


def test_prompt_rungs_extend_to_the_full_budget_exactly(tiny: SteerableModel, tmp_path: Path) -> None:
    """Rungs over prompts and samples, (1 prompt x 1 sample) -> (3 x 2) -> (4 x 3): a survivor ends with
    exactly the completions of one call on all 4 prompts x 3 samples."""
    prompts = ("I went up to my friend and said", "The other day", "Here is how to", "Honestly, I think that")
    fidelity = FidelitySpec(rungs=(1, 2, 3), prompts=(1, 3, 4))
    objective = _objective(tiny, tmp_path, fidelity=fidelity, prompts=prompts)
    trial = optuna.trial.FixedTrial({"pair": POOL[0].label, "layer": 1, "coeff": 4.0}, number=4)
    objective(trial)
    assert trial.user_attrs["prompts_used"] == 4 and trial.user_attrs["samples_per_prompt"] == 3
    lines = [json.loads(x) for x in (tmp_path / "completions" / "trial_00004.jsonl").read_text().splitlines()]
    got = [[r["text"] for r in lines if r["prompt_index"] == p] for p in range(4)]
    cand = Candidate.from_record(trial.user_attrs["candidate"])
    assert got == generate(tiny, list(prompts), cand.steering(tiny, objective.vectors), dataclasses.replace(GEN, n=3))


def test_prompt_rungs_prune_on_few_prompts(tiny: SteerableModel, tmp_path: Path) -> None:
    prompts = ("I went up to my friend and said", "The other day", "Here is how to")
    objective = _objective(tiny, tmp_path, fidelity=FidelitySpec(rungs=(2, 2), prompts=(1, 3)), prompts=prompts)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    study.optimize(objective, n_trials=2)
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert all(t.user_attrs["prompts_used"] == 1 for t in study.trials)
    assert all(t.intermediate_values == {2: t.intermediate_values[2]} for t in study.trials)  # step = completions


@pytest.mark.parametrize(
    ("rungs", "prompts", "match"),
    [((1, 2), (4,), "one entry per rung"), ((2, 2), (4, 4), "increasing"), ((2, 1), (2, 4), "increasing")],
)
def test_bad_prompt_rungs(rungs, prompts, match) -> None:
    with pytest.raises(ValueError, match=match):
        FidelitySpec(rungs, prompts)
    assert FidelitySpec((2, 2), (2, 4)).budget(4) == [(2, 2), (4, 2)]
    with pytest.raises(ValueError, match="the search split has 3"):
        FidelitySpec((2, 2), (2, 4)).budget(3)


def test_failed_trial_is_recorded_and_study_goes_on(tiny: SteerableModel, tmp_path: Path, monkeypatch) -> None:
    objective = _objective(tiny, tmp_path, rungs=(1,))
    calls = {"n": 0}
    real = objective.evaluator.text_items_many

    def sometimes_nan(groups):
        calls["n"] += 1
        return [{"bertscore_f1": point(float("nan"))} for _ in groups] if calls["n"] == 1 else real(groups)

    monkeypatch.setattr(objective.evaluator, "text_items_many", sometimes_nan)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2, catch=(Exception,))
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert "not finite" in study.trials[0].user_attrs["fail_reason"]


@pytest.mark.parametrize("rungs", [(), (3, 2), (0, 2)])
def test_bad_rungs(rungs) -> None:
    with pytest.raises(ValueError, match="rungs"):
        FidelitySpec(rungs)


def _nan_vector(self, model, vectors):  # type: ignore[no-untyped-def]
    return [Addition(SteeringVector(torch.full((1, model.d_model), float("nan")), 1), 1.0)]


def _huge_vector(self, model, vectors):  # type: ignore[no-untyped-def]
    return [Addition(SteeringVector(torch.full((1, model.d_model), 3e38), 1), 1.0)]  # finite, logits are not


def _oom(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _scorer_crash(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise RuntimeError("scorer crashed")


@pytest.mark.parametrize(
    ("target", "replacement", "reason"),
    [
        ("search.space.Candidate.steering", _nan_vector, "ValueError: steering vector has NaN or inf values"),
        ("search.space.Candidate.steering", _huge_vector, "FloatingPointError: the model produced NaN or inf logits"),
        ("search.objective.generate_candidates", _oom, "OutOfMemoryError: CUDA out of memory"),
        ("objectives.Evaluator.text_items_many", _scorer_crash, "RuntimeError: scorer crashed"),
    ],
    ids=["nan-vector", "nan-logits", "out-of-memory", "scoring-error"],
)
def test_a_crashing_trial_is_recorded_failed_and_the_study_goes_on(
    tiny: SteerableModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, replacement, reason: str
) -> None:
    objective = _objective(tiny, tmp_path, rungs=(1,))
    hooks_before = sum(len(b._forward_pre_hooks) + len(b._forward_hooks) for b in tiny.hf.modules())
    study = optuna.create_study(direction="maximize")
    with monkeypatch.context() as m:
        m.setattr(target, replacement)
        study.optimize(objective, n_trials=1, catch=(Exception,))
    study.optimize(objective, n_trials=1, catch=(Exception,))  # the next trial runs normally
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["fail_reason"].startswith(reason)
    assert second.state == optuna.trial.TrialState.COMPLETE
    assert sum(len(b._forward_pre_hooks) + len(b._forward_hooks) for b in tiny.hf.modules()) == hooks_before
