from __future__ import annotations

import json
from pathlib import Path

import pytest

from steering import SteeringVector, load_model
from steering.model import SteerableModel
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def tiny_config(tiny: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    tiny.hf.save_pretrained(root / "model")
    tiny.tokenizer.save_pretrained(root / "model")
    cfg = root / "exp.yaml"
    cfg.write_text(f"name: t\nmodel:\n  source: {root / 'model'}\ngeneration:\n  max_new_tokens: 6\n  n: 2\n")
    return cfg


def test_json_output(tiny_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "generate",
        "--config",
        str(tiny_config),
        "--pair",
        "The bride",
        "",
        "--layer",
        "1",
        "--coeff",
        "4",
        "--n",
        "3",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert len(data["unsteered"]) == 3 and len(data["steered"]) == 3
    assert data["settings"]["layer"] == 1 and data["settings"]["pair"] == ["The bride", ""]


def test_table_output(tiny_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "generate",
        "--config",
        str(tiny_config),
        "--pair",
        "Love",
        "Hate",
        "--layer",
        "0",
        "--coeff",
        "2",
        "--frac",
        "0.5",
    )
    assert code == 0
    assert "UNSTEERED" in out and "STEERED" in out and " 1. " in out and " 2. " in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--layer", "7"], "--layer 7 is out of range"),
        (["--prompt", " "], "--prompt is empty"),
        (["--frac", "1.5"], "frac"),
        (["--positions", "middle"], "positions"),
        (["--n", "0"], "n=0"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tiny_config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    base = ["generate", "--config", str(tiny_config), "--pair", "a", "b", "--layer", "0", "--coeff", "1"]
    code, out, err = run_cli(capsys, *base, *argv)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_model_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  source: {tmp_path / 'missing-model'}\n")
    code, _, err = run_cli(capsys, "generate", "--config", str(cfg), "--pair", "a", "b", "--layer", "0", "--coeff", "1")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_bad_config_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generation:\n  top_p: high\n")
    code, _, err = run_cli(capsys, "generate", "--config", str(cfg), "--pair", "a", "b", "--layer", "0", "--coeff", "1")
    assert code == 2 and "generation.top_p" in err


def test_argparse_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "generate", "--pair", "a", "b", "--layer", "x", "--coeff", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_saved_vector_applies_like_its_pair(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = load_model(str(tiny_config.parent / "model"))
    SteeringVector.from_pair(model, "The bride", "", 1).save(tmp_path / "v")
    base = ["generate", "--config", str(tiny_config), "--n", "2", "--json"]
    code, out, err = run_cli(capsys, *base, "--pair", "The bride", "", "--layer", "1", "--coeff", "4")
    assert code == 0, err
    from_pair = json.loads(out)
    code, out, err = run_cli(capsys, *base, "--vector", str(tmp_path / "v.safetensors"), "--coeff", "4")
    assert code == 0, err
    saved = json.loads(out)
    assert saved["steered"] == from_pair["steered"] and saved["unsteered"] == from_pair["unsteered"]
    assert saved["steered"] != saved["unsteered"]
    assert saved["settings"]["layer"] == 1 and saved["settings"]["pair"] == ["The bride", ""]
    # --coeff defaults to 1 with --vector.
    code, out, _ = run_cli(capsys, *base, "--vector", str(tmp_path / "v"))
    code1, out1, _ = run_cli(capsys, *base, "--pair", "The bride", "", "--layer", "1", "--coeff", "1")
    assert code == code1 == 0 and json.loads(out)["steered"] == json.loads(out1)["steered"]
