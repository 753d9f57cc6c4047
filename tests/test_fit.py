from __future__ import annotations

import pytest
import torch

from steering import SteeringVector
from steering.fit import FitConfig, fit_vector
from steering.model import SteerableModel
from steering.scoring import continuation_logprobs

PROMOTE = [("I went up to my friend and said", " the bride and the groom danced"), ("The", " wedding was lovely")]
SUPPRESS = [("I went up to my friend and said", " the team won the match")]


def _mean_ll(model: SteerableModel, rows: list[tuple[str, str]], fit: object | None) -> float:
    steering = [fit.addition()] if fit is not None else []  # type: ignore[attr-defined]
    logp, n = continuation_logprobs(model, [p for p, _ in rows], [c for _, c in rows], [steering])
    return float(logp.sum() / n.sum())


def test_only_the_vector_gets_gradients_and_the_model_is_unchanged(tiny: SteerableModel) -> None:
    before = {k: v.clone() for k, v in tiny.hf.state_dict().items()}
    fit = fit_vector(tiny, 1, PROMOTE, config=FitConfig(lr=0.1, steps=5))
    assert all(p.grad is None and not p.requires_grad for p in tiny.hf.parameters())
    after = tiny.hf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert fit.vector.activations.abs().sum() > 0  # the vector itself moved
    assert not fit.vector.activations.requires_grad


def test_fitting_raises_the_promoted_likelihood(tiny: SteerableModel) -> None:
    fit = fit_vector(tiny, 1, PROMOTE, config=FitConfig(lr=0.1, steps=30))
    assert fit.losses[-1] < fit.losses[0] - 0.5
    assert _mean_ll(tiny, PROMOTE, fit) > _mean_ll(tiny, PROMOTE, None) + 0.5
    assert fit.vector.metadata["kind"] == "learned" and fit.vector.metadata["steps_run"] == 30


def test_suppression_lowers_the_suppressed_likelihood(tiny: SteerableModel) -> None:
    cfg = FitConfig(lr=0.1, steps=30, norm_bound=10.0)
    plain = fit_vector(tiny, 1, PROMOTE, config=cfg)
    both = fit_vector(tiny, 1, PROMOTE, suppress=SUPPRESS, config=cfg)
    assert _mean_ll(tiny, SUPPRESS, both) < _mean_ll(tiny, SUPPRESS, plain) - 0.1


def test_norm_bound_holds_and_penalty_shrinks(tiny: SteerableModel) -> None:
    bounded = fit_vector(tiny, 0, PROMOTE, config=FitConfig(lr=0.5, steps=20, norm_bound=2.0))
    assert float(bounded.vector.activations.norm()) <= 2.0 + 1e-4
    free = fit_vector(tiny, 0, PROMOTE, config=FitConfig(lr=0.5, steps=20))
    penalised = fit_vector(tiny, 0, PROMOTE, config=FitConfig(lr=0.5, steps=20, norm_penalty=1.0))
    assert float(penalised.vector.activations.norm()) < float(free.vector.activations.norm())


def test_norm_bound_caps_growth_but_never_shrinks_the_start(tiny: SteerableModel) -> None:
    pair = SteeringVector.from_pair(tiny, "The wedding", "The match", 1)
    start = 3.0 * float(pair.activations.norm())
    cfg = FitConfig(lr=0.5, steps=10, positions="front", norm_bound=start / 10)
    tuned = fit_vector(tiny, 1, PROMOTE, config=cfg, init=pair, init_coeff=3.0)
    assert float(tuned.vector.activations.norm()) <= start + 1e-3
    assert float(tuned.vector.activations.norm()) > start / 2  # not projected down to the bound
    assert tuned.vector.metadata["norm_bound_applied"] == pytest.approx(start, rel=1e-5)


def test_early_stopping_and_seeding(tiny: SteerableModel) -> None:
    stop = fit_vector(tiny, 1, PROMOTE, config=FitConfig(steps=50, target_loss=1e9))
    assert stop.stopped == "target_loss" and stop.steps == 1
    cfg = FitConfig(lr=0.1, steps=6, batch_size=1, init_scale=0.5, seed=3)
    a, b = fit_vector(tiny, 1, PROMOTE, config=cfg), fit_vector(tiny, 1, PROMOTE, config=cfg)
    assert torch.equal(a.vector.activations, b.vector.activations)
    other = fit_vector(tiny, 1, PROMOTE, config=FitConfig(lr=0.1, steps=6, batch_size=1, init_scale=0.5, seed=4))
    assert not torch.equal(a.vector.activations, other.vector.activations)


def test_fine_tuning_a_pair_vector_keeps_its_positions(tiny: SteerableModel) -> None:
    pair = SteeringVector.from_pair(tiny, "The wedding", "The match", 1)
    tiny_lr = fit_vector(
        tiny, 1, PROMOTE, config=FitConfig(lr=1e-6, steps=1, positions="front"), init=pair, init_coeff=2.0
    )
    assert tiny_lr.vector.n_pos == pair.n_pos
    assert torch.allclose(tiny_lr.vector.activations, 2.0 * pair.activations, atol=1e-4)
    tuned = fit_vector(tiny, 1, PROMOTE, config=FitConfig(lr=0.1, steps=20, positions="front"), init=pair)
    assert tuned.losses[-1] < tuned.losses[0]
    assert tuned.vector.metadata["init"]["prompt_a"] == "The wedding"
    summed = fit_vector(tiny, 1, PROMOTE, config=FitConfig(lr=1e-6, steps=1), init=pair)
    assert summed.vector.n_pos == 1 and torch.allclose(summed.vector.activations[0], pair.summed(), atol=1e-4)


def test_bad_input_is_refused(tiny: SteerableModel) -> None:
    with pytest.raises(ValueError, match="nothing to promote"):
        fit_vector(tiny, 1, [])
    with pytest.raises(ValueError, match="out of range"):
        fit_vector(tiny, 7, PROMOTE)
    with pytest.raises(ValueError, match="lr > 0"):
        FitConfig(lr=0)
    with pytest.raises(ValueError, match="positions"):
        FitConfig(positions="middle")
