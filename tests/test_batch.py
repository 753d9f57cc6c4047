"""Trials in batches (``study.batch``): K trials asked at once and run in shared forward passes give each trial
the completions and metrics it gets alone, prune alone, and fail alone."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from objectives import EvalData, Evaluator, Objective, ObjectiveSpec, Term
from objectives.compose import Constraint
from objectives.testing import FakeBertScorer
from search.attrs import one_transaction, set_user_attrs
from search.config import StudySpec, load_config
from search.config.features import FidelitySpec
from search.config.space import FloatRange, IntRange, LearnedSpec, PairsSpec, SpaceSpec
from search.objective import CompletionSink, SteeringObjective
from search.run import run_search
from search.session import Scorers
from search.space import Candidate, pair_pool
from search.study import make_sampler, storage_for
from search.vectors import Fitter, VectorCache
from search.workers import OneByOne, run_until
from steering import Addition, GenerationConfig, SteeringVector
from steering.model import SteerableModel
from tests.helpers import SMALL_CONFIG, config_variant

POOL = pair_pool(
    PairsSpec(hand_written=(("The bride and the groom", ""), ("She hates the rain", "She loves"), ("calm", "")))
)
DATA = EvalData(
    gold=("The bride and the groom danced at the wedding.",),
    neutral_texts=("The bus was late.", "Rain fell all day on the town."),
    off_target_prompts=("The recipe needs", "In the morning the train"),
)
ROWS = (("I went up to my friend and said", " the bride and the groom"),)
PROMPTS = ("I went up to my friend and said", "The other day", "Here is how to", "Honestly, I think that")
METRICS = ("bertscore_f1", "rep_rate", "ppl_ratio", "kl", "completion_ppl", "distinct_2")
# (prompts, samples) rungs (1 x 1) -> (3 x 2) -> (4 x 3): later rungs extend earlier ones.
FIDELITY = FidelitySpec(rungs=(1, 2, 3), prompts=(1, 3, 4))
POINTS = [
    (0, 1, 4.0),
    (1, 0, 2.0),
    (2, 1, 8.0),
    (0, 0, 1.0),
    (1, 1, 6.0),
    (2, 0, 3.0),
    (0, 1, 0.5),
]


def _objective(tiny: SteerableModel, out: Path) -> SteeringObjective:
    spec = ObjectiveSpec(
        terms=(Term("bertscore_f1"), Term("rep_rate", -0.5)), constraints=(Constraint("kl", max=0.05, penalty=1.0),)
    )
    return SteeringObjective(
        model=tiny,
        evaluator=Evaluator(set(METRICS), DATA, bertscorer=FakeBertScorer()),  # type: ignore[arg-type]
        objective=Objective(spec),
        space=SpaceSpec(layer=IntRange(0, 1), coeff=FloatRange(0.5, 8.0)),
        pool=POOL,
        prompts=list(PROMPTS),
        generation=GenerationConfig(max_new_tokens=6, n=1, batch_size=64),
        fidelity=FIDELITY,
        sink=CompletionSink(out / "completions"),
    )


def _study(pruner: optuna.pruners.BasePruner | None = None, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(
        direction="maximize", pruner=pruner or optuna.pruners.NopPruner(), sampler=optuna.samplers.TPESampler(seed=seed)
    )
    for pair, layer, coeff in POINTS:
        study.enqueue_trial({"pair": POOL[pair].label, "layer": layer, "coeff": coeff})
    return study


def _run(tiny: SteerableModel, out: Path, batch: int, pruner: optuna.pruners.BasePruner | None = None):  # type: ignore[no-untyped-def]
    study, seen = _study(pruner), []
    run_until(study, _objective(tiny, out), target=len(POINTS), batch=batch, callbacks=[lambda s, t: seen.append(t)])
    return study, seen


def _completions(out: Path, number: int) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "completions" / f"trial_{number:05d}.jsonl").read_text().splitlines()]


def _same_trials(a: optuna.Study, b: optuna.Study) -> None:
    assert len(a.trials) == len(b.trials) == len(POINTS)
    for x, y in zip(a.trials, b.trials, strict=True):
        assert x.params == y.params and x.state == y.state, x.number
        assert x.user_attrs["metrics"] == pytest.approx(y.user_attrs["metrics"], rel=1e-5, abs=1e-6), x.number
        assert x.intermediate_values == pytest.approx(y.intermediate_values, rel=1e-5, abs=1e-6), x.number
        if x.state == TrialState.COMPLETE:
            assert x.value == pytest.approx(y.value, rel=1e-5, abs=1e-6)


def test_a_batched_study_gives_each_candidate_the_numbers_it_gets_alone(tiny: SteerableModel, tmp_path: Path) -> None:
    one, one_seen = _run(tiny, tmp_path / "one", batch=1)
    four, four_seen = _run(tiny, tmp_path / "four", batch=4)  # batches of 4 and 3
    assert all(t.state == TrialState.COMPLETE for t in one.trials)
    _same_trials(one, four)
    for t in one.trials:
        assert _completions(tmp_path / "one", t.number) == _completions(tmp_path / "four", t.number)
    assert {t.user_attrs["metrics"]["completion_ppl"] for t in one.trials} != 1  # the candidates do differ
    # Callbacks (the run folder's refresh, the progress bar) followed every trial, in both.
    assert sorted(t.number for t in one_seen) == sorted(t.number for t in four_seen) == list(range(len(POINTS)))


def test_survivors_of_a_batch_continue_together_and_equal_their_unbatched_run(
    tiny: SteerableModel, tmp_path: Path
) -> None:
    """A pruner deciding on each trial's own rung value prunes the same trials batched or not; the survivors'
    later rungs extend their earlier samples as they do alone."""
    free, _ = _run(tiny, tmp_path / "free", batch=1)
    first = sorted(t.intermediate_values[1] for t in free.trials)
    threshold = first[len(first) // 2]  # about half the trials stop after their first rung
    one, _ = _run(tiny, tmp_path / "one", batch=1, pruner=optuna.pruners.ThresholdPruner(lower=threshold))
    four, _ = _run(tiny, tmp_path / "four", batch=4, pruner=optuna.pruners.ThresholdPruner(lower=threshold))
    states = [t.state for t in four.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    _same_trials(one, four)
    for t, alone in zip(four.trials, one.trials, strict=True):
        assert t.user_attrs["samples_per_prompt"] == alone.user_attrs["samples_per_prompt"]
        assert (t.user_attrs["samples_per_prompt"] < 3) == (t.state == TrialState.PRUNED)
        if t.state == TrialState.COMPLETE:
            assert _completions(tmp_path / "four", t.number) == _completions(tmp_path / "free", t.number)


def test_one_at_a_time_is_what_study_optimize_does(tiny: SteerableModel, tmp_path: Path) -> None:
    """batch 1 proposes, runs and records exactly the trials ``study.optimize`` did before batches existed."""
    a = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=2))
    b = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=2))
    a.optimize(_objective(tiny, tmp_path / "a"), n_trials=4)
    run_until(b, _objective(tiny, tmp_path / "b"), target=4, batch=1)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert [t.user_attrs["metrics"] for t in a.trials] == [t.user_attrs["metrics"] for t in b.trials]


def test_each_trial_of_a_batch_is_begun_before_the_next_is_asked() -> None:
    """Multivariate TPE samples a trial's parameters when it is asked; its constant liar keeps a proposal away
    from running trials that have parameters. So each trial's parameters are suggested (``begin``) before the
    next trial of its batch is asked; a plain objective runs in batches through ``OneByOne``."""
    study = optuna.create_study()
    asked_at_begin: list[int] = []

    def f(trial: optuna.Trial) -> float:
        return (trial.suggest_float("x", -3, 3) - 1) ** 2

    class Recording(OneByOne):
        def begin(self, trial: optuna.Trial) -> optuna.Trial:
            asked_at_begin.append(len(study.get_trials(deepcopy=False)))
            f(trial)
            return trial

    run_until(study, Recording(f), target=14, batch=6)
    assert asked_at_begin == list(range(1, 15))  # trial i is begun when trials 0..i exist, none after it
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 14


def _poisoned(coeff: float, how: str):  # type: ignore[no-untyped-def]
    real = Candidate.steering

    def steering(self, model, vectors):  # type: ignore[no-untyped-def]
        if self.additions[0].coeff != coeff:
            return real(self, model, vectors)
        value = float("nan") if how == "nan-vector" else 3e38  # finite, but its logits are not
        return [Addition(SteeringVector(torch.full((1, model.d_model), value), 1), 1.0)]

    return steering


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("nan-vector", "ValueError: steering vector has NaN or inf values"),
        ("nan-logits", "FloatingPointError: the model produced NaN or inf logits"),
    ],
)
def test_one_failing_trial_fails_alone_and_its_batch_goes_on(
    tiny: SteerableModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, reason: str
) -> None:
    one, _ = _run(tiny, tmp_path / "one", batch=1)
    hooks_before = sum(len(b._forward_pre_hooks) + len(b._forward_hooks) for b in tiny.hf.modules())
    monkeypatch.setattr("search.space.Candidate.steering", _poisoned(POINTS[2][2], how))
    four, seen = _run(tiny, tmp_path / "four", batch=4)
    failed = four.trials[2]
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith(reason)
    assert len(seen) == len(POINTS)
    for x, y in zip(one.trials, four.trials, strict=True):
        if x.number != 2:
            assert y.state == TrialState.COMPLETE
            assert x.user_attrs["metrics"] == pytest.approx(y.user_attrs["metrics"], rel=1e-5, abs=1e-6)
            assert _completions(tmp_path / "one", x.number) == _completions(tmp_path / "four", x.number)
    assert sum(len(b._forward_pre_hooks) + len(b._forward_hooks) for b in tiny.hf.modules()) == hooks_before


def test_a_scorer_error_in_a_shared_pass_is_redone_trial_by_trial(
    tiny: SteerableModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared scoring pass that raises (e.g. out of memory on a big batch) is redone one trial at a time:
    the trials whose own pass works complete, with the numbers they get alone."""
    one, _ = _run(tiny, tmp_path / "one", batch=1)
    real = Evaluator.text_items_many

    def fails_when_shared(self, groups):  # type: ignore[no-untyped-def]
        if len(groups) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, groups)

    monkeypatch.setattr(Evaluator, "text_items_many", fails_when_shared)
    four, _ = _run(tiny, tmp_path / "four", batch=4)
    _same_trials(one, four)


@pytest.mark.parametrize("batch", [1, 4])
def test_a_grid_study_with_an_enqueued_trial_runs_in_batches(batch: int, caplog: pytest.LogCaptureFixture) -> None:
    """The grid sampler under ask-and-tell: an enqueued trial told while one grid point is left, and the last
    grid point, end like any trial (Optuna's own grid sampler raised KeyError and ``study.stop`` there)."""
    space = SpaceSpec(layer=IntRange(1, 1), coeff=FloatRange(values=(1.0, 4.0)), frac=FloatRange(values=(0.5, 1.0)))
    sampler = make_sampler(StudySpec(sampler="grid"), space, POOL[:1], 1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"coeff": 4.0, "frac": 1.0})
    seen: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("coeff", 1.0, 4.0) * trial.suggest_float("frac", 0.5, 1.0)

    with caplog.at_level(logging.WARNING):
        run_until(study, OneByOne(objective), target=5, batch=batch, callbacks=[lambda s, t: seen.append(t.number)])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert {(t.params["coeff"], t.params["frac"]) for t in study.trials[1:]} == {(1, 0.5), (1, 1), (4, 0.5), (4, 1)}
    assert sorted(seen) == list(range(5))  # every trial's callbacks ran, the last grid point's too


def test_an_exception_escaping_the_objective_fails_the_batch_and_the_study_goes_on(tiny: SteerableModel) -> None:
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def begin(self, trial: optuna.Trial) -> optuna.Trial:
            trial.suggest_float("x", 0, 1)
            return trial

        def finish(self, batch, done) -> None:  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug")
            for trial in batch:
                OneByOne(lambda t: t.params["x"]).finish([trial], done)

    study = optuna.create_study()
    run_until(study, Broken(), target=5, batch=3)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 2
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: a bug"


def test_run_search_runs_batches_and_resumes_with_another_batch(tiny: SteerableModel, tmp_path: Path) -> None:
    """``study.batch`` reaches the runner; like the budget, it may change when a run folder is resumed."""
    text = config_variant(SMALL_CONFIG, ("study: {n_trials: 3, seed: 0}", "study: {n_trials: 3, seed: 0, batch: 2}"))
    (tmp_path / "exp.yaml").write_text(text)
    cfg, out, scorers = load_config(tmp_path / "exp.yaml"), tmp_path / "run", Scorers(bert=FakeBertScorer())
    study = run_search(cfg, out=out, model=tiny, scorers=scorers, progress=False)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 and study.trials[0].user_attrs["baseline"]
    again = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, batch=4))
    study = run_search(again, out=out, model=tiny, scorers=scorers, n_trials=6, progress=False)
    assert len(study.trials) == 6 and len((out / "trials.csv").read_text().splitlines()) == 1 + 6
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(list((out / "completions").glob("*.jsonl"))) == len(complete) >= 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # this test asks for trials itself
@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_user_attributes_of_a_batch_are_written_together(tmp_path: Path, kind: str) -> None:
    storage = {
        "sqlite": lambda: storage_for(None, tmp_path),
        "journal": lambda: storage_for(f"journal:{tmp_path / 'j.log'}", tmp_path),
        "memory": lambda: None,
    }[kind]()
    study = optuna.create_study(storage=storage)
    a, b, done = study.ask(), study.ask(), study.ask()
    study.tell(done, 1.0)
    assert one_transaction([a, b]) == (kind == "sqlite")  # RDB storages take the one-transaction path
    set_user_attrs([(a, {"metrics": {"kl": 0.5}, "metric_kl": 0.5}), (b, {"label": "x"})])
    set_user_attrs([(a, {"metric_kl": 0.25})])  # overwrites, as set_user_attr does
    assert a.user_attrs == {"metrics": {"kl": 0.5}, "metric_kl": 0.25} and b.user_attrs == {"label": "x"}
    stored = optuna.load_study(study_name=study.study_name, storage=study._storage).trials
    assert stored[0].user_attrs == a.user_attrs and stored[1].user_attrs == b.user_attrs
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # a finished trial is refused, as one by one
        set_user_attrs([(a, {"late": 1}), (done, {"late": 1})])
    assert "late" not in optuna.load_study(study_name=study.study_name, storage=study._storage).trials[2].user_attrs


def test_learned_and_pair_candidates_share_a_batch(tiny: SteerableModel, tmp_path: Path) -> None:
    """Fitted vectors (added from token 1 on, through every generated token) and pair vectors (front positions)
    in one batch: each trial gets what it gets alone."""
    space = SpaceSpec(
        layer=IntRange(0, 1),
        coeff=FloatRange(0.5, 8.0),
        kinds=("pair", "learned"),
        learned=LearnedSpec(lr=FloatRange(0.01, 0.1, log=True), steps=IntRange(2, 4), init=("zeros", "pair")),
    )
    points = [
        {"kind": "learned", "init": "zeros", "layer": 1, "lr": 0.05, "steps": 3, "norm_bound": 5.0},
        {"kind": "pair", "pair": POOL[0].label, "layer": 1, "coeff": 4.0},
        {
            "kind": "learned",
            "init": "pair",
            "pair": POOL[1].label,
            "layer": 0,
            "coeff": 2.0,
            "lr": 0.05,
            "steps": 2,
            "norm_bound": 5.0,
        },
        {"kind": "pair", "pair": POOL[2].label, "layer": 0, "coeff": 6.0},
    ]
    studies = {}
    for batch in (1, 4):
        out = tmp_path / str(batch)
        objective = _objective(tiny, out)
        objective.space = space
        objective.vectors = VectorCache(Fitter(ROWS, spec=space.learned), out / "fitted")
        study = optuna.create_study(direction="maximize")
        for p in points:
            study.enqueue_trial(p)
        run_until(study, objective, target=len(points), batch=batch)
        studies[batch] = study
    assert [t.user_attrs["candidate"][0]["kind"] for t in studies[4].trials] == ["learned", "pair"] * 2
    assert all(t.state == TrialState.COMPLETE for t in studies[4].trials)
    for x, y in zip(studies[1].trials, studies[4].trials, strict=True):
        assert x.user_attrs["metrics"] == pytest.approx(y.user_attrs["metrics"], rel=1e-5, abs=1e-6)
        assert _completions(tmp_path / "1", x.number) == _completions(tmp_path / "4", x.number)
