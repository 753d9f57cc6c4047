from __future__ import annotations

import pytest
import torch

from objectives.damage import GoldLogLikelihood, OffTargetKL, PerplexityRatio
from steering import Addition, SteeringVector
from steering.model import SteerableModel

NEUTRAL = ["The bus was late this morning.", "We took the train to the city and came home."]
OFF = ["The capital of France is", "To make a cup of tea, first you"]


def _steer(model: SteerableModel, coeff: float) -> list[Addition]:
    return [Addition(SteeringVector.from_pair(model, "The bride and the groom", "", layer=0), coeff)]


def test_no_steering_is_no_damage(tiny: SteerableModel) -> None:
    ppl = PerplexityRatio(NEUTRAL).score(tiny, [])
    assert ppl["ppl_ratio"] == pytest.approx(1.0) and ppl["ppl_steered"] == pytest.approx(ppl["ppl_unsteered"])
    assert OffTargetKL(OFF).score(tiny, [])["kl"] == pytest.approx(0.0, abs=1e-6)


def test_huge_coefficient_raises_perplexity_ratio_and_kl(tiny: SteerableModel) -> None:
    ppl, kl = PerplexityRatio(NEUTRAL), OffTargetKL(OFF)
    small = ppl.score(tiny, _steer(tiny, 0.5))["ppl_ratio"], kl.score(tiny, _steer(tiny, 0.5))["kl"]
    huge = ppl.score(tiny, _steer(tiny, 50.0))["ppl_ratio"], kl.score(tiny, _steer(tiny, 50.0))["kl"]
    assert huge[0] > small[0] > 0.5 and huge[0] > 1.05
    assert huge[1] > small[1] > 0


def test_gold_loglik_is_the_mean_token_log_likelihood_of_the_passage(tiny: SteerableModel) -> None:
    prompt, passage = "I went up to my friend and said", "The bride and the groom danced."
    gl = GoldLogLikelihood([prompt], [passage])
    v = gl.score(tiny, [])["gold_loglik"]
    # Independently: teacher-forced log-probabilities of the passage's tokens after the prompt, plain HF.
    head, full = tiny.encode(prompt), tiny.encode(prompt + " " + passage)
    assert full[: len(head)] == head
    with torch.no_grad():
        logp = torch.log_softmax(tiny.hf(torch.tensor([full])).logits[0, :-1].float(), dim=-1)
    targets = torch.tensor(full[len(head) :])
    expected = logp[len(head) - 1 :].gather(1, targets[:, None]).mean()
    assert v == pytest.approx(float(expected), abs=1e-4)
    assert v != gl.score(tiny, _steer(tiny, 5.0))["gold_loglik"]


@pytest.mark.parametrize(
    "build,needle",
    [
        (lambda: PerplexityRatio([]), "neutral text set is empty"),
        (lambda: OffTargetKL(["ok", " "]), "blank entry"),
        (lambda: GoldLogLikelihood(["p"], []), "gold set is empty"),
    ],
)
def test_bad_inputs(build, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        build()
