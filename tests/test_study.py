from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from search.adversarial import Start, load_or_mutate
from search.config import BaselineSpec, TuneSpec
from search.config.features import AdversarialSpec
from search.config.space import FloatRange, IntRange, PairsSpec, SpaceSpec
from search.space import pair_pool, suggest
from search.study import enqueue_baselines, outside_space, storage_for

SPACE = SpaceSpec(layer=IntRange(0, 1), coeff=FloatRange(1.0, 8.0), n_additions=IntRange(1, 2))
POOL = pair_pool(PairsSpec(hand_written=(("weddings", ""), ("The bride", "The team"))))


def test_a_baseline_the_space_cannot_express_is_not_enqueued() -> None:
    inside = BaselineSpec(("weddings", ""), 1, 4.0)
    outside = [
        BaselineSpec(("weddings", ""), 3, 4.0),
        BaselineSpec(("weddings", ""), 0, 16.0),
        BaselineSpec(("weddings", ""), 0, 4.0, positions="all"),
    ]
    assert outside_space(inside, SPACE) is None
    assert [outside_space(b, SPACE) for b in outside] == [
        "its layer lies outside the search space",
        "its coeff lies outside the search space",
        "its positions lies outside the search space",
    ]
    study = optuna.create_study(direction="maximize")
    assert enqueue_baselines(study, [inside, *outside], SPACE, TuneSpec()) == 1
    trial = study.ask()
    cand = suggest(trial, SPACE, POOL)
    # the enqueued trial is exactly the baseline: one addition (n_additions varies), its layer and coeff
    assert len(cand.additions) == 1 and cand.additions[0].layer == 1 and cand.additions[0].coeff == 4.0
    assert trial.params["n_additions"] == 1


def test_adversarial_runs_made_with_other_settings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "adversarial.json"
    starts = [Start(("weddings", ""), 1, 4.0)]
    path.write_text(json.dumps({"made_with": {"starts": [], "spec": {}}, "runs": []}))
    with pytest.raises(ValueError, match="new --out"):
        load_or_mutate(tmp_path, None, starts, [], AdversarialSpec())  # type: ignore[arg-type]


def test_a_sqlite_storage_writes_ahead(tmp_path: Path) -> None:
    """SQLite storages run every connection in WAL mode with synchronous=NORMAL (a commit on the default rollback
    journal took about 20 ms here, in WAL about 2); the mode is the file's, so plain readers see the study."""
    storage = storage_for(None, tmp_path)
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    engine = storage.engine  # type: ignore[attr-defined]
    with engine.connect() as a, engine.connect() as b:  # two connections at once: the pool's first and a new one
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    reader = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(reader.trials) == 2
