from __future__ import annotations

import optuna
import pytest
import torch

from search.space import FloatRange, IntRange, PairsSpec, SpaceSpec, VectorCache, pair_pool, suggest
from steering.model import SteerableModel

PAIRS = PairsSpec(
    hand_written=(("I talk about weddings constantly", "I do not talk about weddings constantly"), ("weddings", "")),
    templates=(("{x}", ""), ("I talk about {x} constantly", "I do not talk about {x} constantly")),
    words=("weddings", "brides"),
)


def test_pool_hand_written_first_and_deduplicated() -> None:
    pool = pair_pool(PAIRS)
    assert [p.source for p in pool[:2]] == ["hand-written", "hand-written"]
    assert len(pool) == 4  # 2 hand-written + brides from each template; the weddings ones are duplicates
    assert len({p.label for p in pool}) == len(pool)


def test_fixed_trial_drives_the_space(tiny: SteerableModel) -> None:
    space = SpaceSpec(
        layer=IntRange(0, 1),
        coeff=FloatRange(1.0, 16.0, log=True),
        frac=FloatRange(0.1, 1.0),
        masks=("first", "random"),
        positions=("front", "all"),
    )
    pool = pair_pool(PAIRS)
    trial = optuna.trial.FixedTrial(
        {"pair": pool[1].label, "layer": 1, "coeff": 4.0, "frac": 0.5, "mask": "random", "positions": "all"}
    )
    cand = suggest(trial, space, pool)
    (c,) = cand.additions
    assert (c.pair, c.layer, c.coeff, c.frac, c.mask, c.positions) == (pool[1], 1, 4.0, 0.5, "random", "all")
    (add,) = cand.steering(tiny, VectorCache())
    assert add.layer == 1 and add.coeff == 4.0 and str(add.positions) == "all" and add.dim_mask().sum() == 16


def test_single_valued_dimensions_are_not_parameters() -> None:
    study = optuna.create_study()
    trial = study.ask()
    suggest(trial, SpaceSpec(coeff=FloatRange(values=(2.0, 4.0))), pair_pool(PAIRS))
    assert set(trial.params) == {"pair", "coeff"}


def test_several_additions_get_suffixed_params() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cand = suggest(trial, SpaceSpec(n_additions=IntRange(2, 2), layer=IntRange(0, 3)), pair_pool(PAIRS))
    assert len(cand.additions) == 2 and {"pair_2", "layer_2", "coeff_2"} <= set(trial.params)


def test_vector_cache_builds_each_pair_layer_once(tiny: SteerableModel) -> None:
    cache, pool = VectorCache(), pair_pool(PAIRS)
    v1 = cache.get(tiny, pool[0], 1)
    assert cache.get(tiny, pool[0], 1) is v1 and torch.equal(v1.activations, cache.get(tiny, pool[0], 1).activations)


@pytest.mark.parametrize(
    "build,needle",
    [
        (lambda: FloatRange(1.0), "needs low and high"),
        (lambda: FloatRange(0.0, 1.0, log=True), "log range needs low > 0"),
        (lambda: FloatRange(2.0, 1.0), "above high"),
        (lambda: PairsSpec(), "needs hand_written"),
        (lambda: PairsSpec(templates=(("talk", ""),), words=("x",)), "no {x} placeholder"),
        (lambda: SpaceSpec(masks=("middle",)), "middle"),
        (lambda: SpaceSpec(positions=("nowhere",)), "positions"),
    ],
)
def test_bad_specs(build, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        build()
