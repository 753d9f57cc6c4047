"""Every shipped config validates (the GPT-2-XL one too, though it needs internet and a GPU to run), from any
working directory: data paths in a config are relative to the config file, and shipped configs are found
by name (``steersearch run quickstart``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.cli import main
from search.config import ConfigError, ExperimentConfig, find_config, load_config, shipped_configs, shipped_file
from search.outputs import config_yaml
from search.session import full_pool, load_data
from search.space import Pair
from search.study import grid_space, outside_space, tuning_grid

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
DATA_FIELDS = ("gold", "prompts", "neutral", "off_target")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository: data paths are relative to the config file
    cfg = load_config(path)
    assert cfg.name == path.stem
    for f in DATA_FIELDS:
        p = Path(getattr(cfg.data, f))
        assert p.is_absolute() and p.is_file() and p.parent == ROOT / "configs" / "gold", (f, p)
    load_data(cfg)
    if cfg.pairs is None:  # an analysis-only config (`steersearch analyze`)
        assert cfg.distill is not None or cfg.length is not None or cfg.overshoot is not None
        return
    grid = tuning_grid(cfg.baselines, cfg.tune)
    for b, _ in grid:  # every shipped baseline, and every setting it is tuned at, is enqueued as exactly itself
        assert outside_space(b, cfg.space) is None, (b, outside_space(b, cfg.space))
    assert len(grid) < cfg.study.n_trials or not cfg.baselines  # the search gets trials of its own
    pool = full_pool(cfg)
    labels = [p.label for p in pool]
    assert labels and len(labels) == len(set(labels))  # no pair twice
    assert {Pair(*b.pair).label for b in cfg.baselines} <= set(labels)  # every baseline can be a trial's pair
    if cfg.study.sampler == "grid":
        grid = grid_space(cfg.space, pool)
        assert len(grid["coeff"]) * len(grid["frac"]) <= cfg.study.n_trials


def test_all_expected_configs_ship() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "frac-coeff-sweep", "gpt2-xl-weddings", "love", "calm"} <= names
    assert {"learned-weddings", "adversarial-weddings", "distill-weddings"} <= names
    assert {"smollm2-weddings", "gemma3-weddings"} <= names  # real models
    assert {"smollm2-frac-coeff-sweep", "smollm2-learned-weddings", "smollm2-calm"} <= names  # more on SmolLM2
    assert shipped_configs() == sorted(names)  # what the installed package finds (here: the repository's)


def test_quickstart_loads_from_another_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    here = load_config("configs/quickstart.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(ROOT / "configs" / "quickstart.yaml") == here
    assert here.data.gold == str(ROOT / "configs" / "gold" / "weddings.yaml")
    load_data(here)


def test_data_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "exp"
    shutil.copytree(ROOT / "configs" / "gold", elsewhere / "my-gold")
    text = (ROOT / "configs" / "quickstart.yaml").read_text().replace(" gold/", " my-gold/")
    text += "scorer: {num_layers: 5, baseline_path: ../baseline.csv}\n"
    text = text.replace("  masks: [first]\n", "  masks: [first]\n  learned: {suppress: my-gold/food.yaml}\n")
    (elsewhere / "quickstart.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)  # neither the repository nor the config's folder
    cfg = load_config("exp/quickstart.yaml")
    files = {
        "gold": "weddings.yaml",
        "prompts": "prompts.yaml",
        "neutral": "neutral.yaml",
        "off_target": "off_target.yaml",
    }
    assert {f: getattr(cfg.data, f) for f in files} == {f: str(elsewhere / "my-gold" / n) for f, n in files.items()}
    assert cfg.space.learned.suppress == str(elsewhere / "my-gold" / "food.yaml")
    assert cfg.scorer.baseline_path == str(tmp_path / "baseline.csv")
    assert load_data(cfg).gold.passages.search


def test_absent_data_is_the_shipped_gold(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("name: x\ndata: {gold: love.yaml}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data.gold == str(tmp_path / "love.yaml")  # given: relative to the config
    assert cfg.data.prompts == ExperimentConfig().data.prompts == str(shipped_file("gold/prompts.yaml"))
    assert all(Path(getattr(ExperimentConfig().data, f)).is_file() for f in DATA_FIELDS)
    with pytest.raises(ConfigError, match=r"data.gold: file '.*love.yaml' does not exist"):
        load_data(cfg)


def test_name_or_path_fields_resolve_only_when_explicitly_relative(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("model: {source: ./model}\nscorer: {model: ../encoder}\n")
    (tmp_path / "b.yaml").write_text("model: {source: gpt2-xl}\nscorer: {model: roberta-large}\n")
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.yaml")
    assert a.model.source == str(tmp_path / "model") and a.scorer.model == str(tmp_path.parent / "encoder")
    assert b.model.source == "gpt2-xl" and b.scorer.model == "roberta-large"  # hub names


def test_written_back_config_round_trips(tmp_path: Path) -> None:
    for path in CONFIGS:
        cfg = load_config(path)
        run_dir = tmp_path / cfg.name
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(config_yaml(cfg))
        assert load_config(run_dir / "config.yaml") == cfg, path.name


def test_find_config_by_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("quickstart") == find_config("quickstart.yaml") == shipped_file("quickstart.yaml")
    (tmp_path / "quickstart.yaml").write_text("name: mine\n")
    assert find_config("quickstart.yaml") == Path("quickstart.yaml")  # an existing file wins
    for bad in ("nope", "sub/quickstart", "./quickstart"):
        with pytest.raises(ConfigError, match="no such file.*shipped: .*quickstart"):
            find_config(bad)


def test_cli_unknown_config_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["run", "nope"], ["compare", "nope", "--run", "x"], ["analyze", "nope"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "config 'nope'" in err and "quickstart" in err and len(err.strip().splitlines()) == 1
    assert main(["generate", "--config", "nope", "--pair", "a", "b", "--layer", "0", "--coeff", "1"]) == 2
    assert "--config 'nope'" in capsys.readouterr().err


@pytest.mark.embedded
def test_cli_generate_with_a_shipped_config_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["generate", "--config", "quickstart", "--pair", " weddings", "", "--layer", "1", "--coeff", "16"]
    assert main([*argv, "--n", "1", "--json"]) == 0, capsys.readouterr().err
    assert '"steered"' in capsys.readouterr().out
