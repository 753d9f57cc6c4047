"""Every shipped config validates (the GPT-2-XL one too, though it needs internet and a GPU to run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config import load_config
from search.run import full_pool, load_data
from search.study import grid_space, outside_space

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parents[1])
    cfg = load_config(path)
    assert cfg.name == path.stem
    load_data(cfg)
    if cfg.pairs is None:  # an analysis-only config (`steersearch analyze`)
        assert cfg.distill is not None or cfg.length is not None
        return
    for b in cfg.baselines:  # every shipped baseline is enqueued as exactly itself
        assert outside_space(b, cfg.space) is None, (b, outside_space(b, cfg.space))
    pool = full_pool(cfg)
    assert pool and all(p.label in {q.label for q in pool} for p in pool)
    if cfg.study.sampler == "grid":
        grid = grid_space(cfg.space, pool)
        assert len(grid["coeff"]) * len(grid["frac"]) <= cfg.study.n_trials


def test_all_expected_configs_ship() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "frac-coeff-sweep", "gpt2-xl-weddings", "love", "calm"} <= names
    assert {"learned-weddings", "adversarial-weddings", "distill-weddings"} <= names
