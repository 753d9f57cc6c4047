from __future__ import annotations

import optuna
import pytest
import torch

from search.config.space import FloatRange, IntRange, LearnedSpec, PairsSpec, SpaceSpec
from search.space import Candidate, pair_pool, suggest
from search.vectors import Fitter, VectorCache
from steering import SteeringVector
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


def test_distilled_pairs_join_the_pool_last_with_their_source() -> None:
    spec = PairsSpec(hand_written=PAIRS.hand_written, distilled=((" mint", " feedstock"), ("weddings", "")))
    pool = pair_pool(spec)
    assert [(p.a, p.source) for p in pool] == [
        ("I talk about weddings constantly", "hand-written"),
        ("weddings", "hand-written"),  # a distilled pair that is also hand-written stays hand-written
        (" mint", "distilled"),
    ]
    with pytest.raises(ValueError, match="non-empty"):
        PairsSpec(hand_written=PAIRS.hand_written, distilled=(("", ""),))


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


def test_vector_cache_builds_each_pair_layer_once(tiny: SteerableModel, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, pool = VectorCache(), pair_pool(PAIRS)
    built = []
    real = SteeringVector.from_pair.__func__  # type: ignore[attr-defined]

    def counting(cls, model, a, b, layer, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append((a, b, layer))
        return real(cls, model, a, b, layer, *args, **kwargs)

    monkeypatch.setattr(SteeringVector, "from_pair", classmethod(counting))
    v1 = cache.pair(tiny, pool[0], 1)
    assert cache.pair(tiny, pool[0], 1) is v1 and len(built) == 1  # the second call is served from the cache
    cache.pair(tiny, pool[0], 0)
    assert len(built) == 2  # another layer is another vector
    fresh = real(SteeringVector, tiny, pool[0].a, pool[0].b, 1)
    assert torch.equal(v1.activations, fresh.activations)  # what is cached is the pair's real vector


LEARNED = SpaceSpec(
    layer=IntRange(0, 1),
    kinds=("pair", "learned"),
    learned=LearnedSpec(lr=FloatRange(0.01, 0.1, log=True), steps=IntRange(2, 4), init=("zeros", "pair")),
)
ROWS = (("I went up to my friend and said", " the bride and the groom"),)


def test_learned_kind_picks_fit_hyperparameters_and_round_trips() -> None:
    pool = pair_pool(PAIRS)
    trial = optuna.trial.FixedTrial(
        {"kind": "learned", "init": "zeros", "layer": 1, "lr": 0.05, "steps": 3, "norm_bound": 5.0}
    )
    cand = suggest(trial, LEARNED, pool)
    (c,) = cand.additions
    assert c.pair is None and c.kind == "learned" and c.source == "learned" and c.coeff == 1.0
    assert c.fit is not None and (c.fit.lr, c.fit.steps, c.fit.norm_bound, c.fit.positions) == (0.05, 3, 5.0, "from:1")
    assert Candidate.from_record(cand.record()) == cand
    tuned = suggest(
        optuna.trial.FixedTrial(
            {
                "kind": "learned",
                "init": "pair",
                "pair": pool[1].label,
                "layer": 0,
                "coeff": 2.0,
                "lr": 0.05,
                "steps": 2,
                "norm_bound": 5.0,
            }
        ),
        LEARNED,
        pool,
    )
    assert tuned.additions[0].pair == pool[1] and tuned.additions[0].positions == "front"
    assert Candidate.from_record(tuned.record()) == tuned
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = {suggest(study.ask(), LEARNED, pool).additions[0].kind for _ in range(20)}
    assert kinds == {"pair", "learned"}


def test_fitted_vectors_are_fitted_once_and_reloaded_from_disk(tiny: SteerableModel, tmp_path) -> None:
    trial = optuna.trial.FixedTrial(
        {"kind": "learned", "init": "zeros", "layer": 1, "lr": 0.05, "steps": 3, "norm_bound": 5.0}
    )
    cand = suggest(trial, LEARNED, pair_pool(PAIRS))
    cache = VectorCache(Fitter(ROWS, spec=LEARNED.learned), tmp_path)
    (add,) = cand.steering(tiny, cache)
    assert add.coeff == 1.0 and str(add.positions) == "from:1" and cache.fits_run == 1
    cand.steering(tiny, cache)
    assert cache.fits_run == 1
    again = VectorCache(Fitter(ROWS, spec=LEARNED.learned), tmp_path)
    (loaded,) = cand.steering(tiny, again)
    assert again.fits_run == 0 and torch.equal(loaded.vector.activations, add.vector.activations)
    other_rows = VectorCache(Fitter((("The", " team won"),), spec=LEARNED.learned), tmp_path)
    cand.steering(tiny, other_rows)
    assert other_rows.fits_run == 1  # different training data, different vector
    with pytest.raises(ValueError, match="Fitter"):
        cand.steering(tiny, VectorCache())


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
        (lambda: SpaceSpec(kinds=("vector",)), "kinds"),
        (lambda: LearnedSpec(init=("random",)), "init"),
        (lambda: LearnedSpec(positions="middle"), "positions"),
        (lambda: LearnedSpec(lr=FloatRange(0.0, 0.1)), "lr must be > 0"),
        (lambda: LearnedSpec(positions="front"), "learned positions"),
        (lambda: LearnedSpec(norm_bound=FloatRange(values=(0.0, 5.0))), "norm_bound must be > 0"),
    ],
)
def test_bad_specs(build, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        build()
