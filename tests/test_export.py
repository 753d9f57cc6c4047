"""`steersearch export`: a run's trial as a llama.cpp control-vector GGUF (read back with gguf's own reader:
names, shapes, values, metadata), or as vector files `generate --vector` applies as found; what llama.cpp cannot
express is refused in one line; and the layer mapping, simulated the way llama.cpp applies a control vector
(added to a block's output at every position), gives the same logits as steersearch's own steering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from objectives.testing import FakeBertScorer
from search.config import load_config
from search.run import run_search
from search.session import Scorers, load_data, load_run_study, vector_cache
from search.space import Candidate
from steering import Addition, MaskMode, Positions, SteeringVector, steer
from steering.export import ExportError, control_directions, model_hint, write_control_vector
from steering.model import SteerableModel
from steering.testing import tiny_llama
from tests.helpers import SMALL_CONFIG, config_variant, run_cli

ALL = Positions.parse("all")
N_LAYER = 4


@pytest.fixture(scope="module")
def llama() -> SteerableModel:
    """A 4-layer tiny Llama (SmolLM2's family): layers 2 and 3 have llama.cpp slots (direction.1, direction.2)."""
    return tiny_llama(n_layer=N_LAYER)


def _run(llama: SteerableModel, root: Path, *, positions: str, n_trials: int) -> Path:
    if not (root / "model").exists():
        llama.hf.save_pretrained(root / "model")
        llama.tokenizer.save_pretrained(root / "model")
    text = config_variant(
        SMALL_CONFIG,
        ("name: t", f"name: t\nmodel: {{source: {root / 'model'}}}"),
        ("layer: {low: 0, high: 1}", f"layer: {{low: 2, high: 3}}\n  positions: [{positions}]"),
        ("coeff: {low: 0.5, high: 8, log: true}", "coeff: {low: 0.5, high: 8, log: true}\n  frac: {values: [0.5]}"),
        ("layer: 1, coeff: 4}", f"layer: 2, coeff: 4, frac: 0.5, positions: {positions}}}"),
        ("n_trials: 3", f"n_trials: {n_trials}"),
    )
    config = root / f"{positions}.yaml"
    config.write_text(text)
    cfg = load_config(config)
    out = root / "runs" / positions
    run_search(cfg, out=out, model=llama, scorers=Scorers(bert=FakeBertScorer()), n_trials=n_trials)
    return out


@pytest.fixture(scope="module")
def run(llama: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-trial run at every position (layers 2..3, frac 0.5), the model saved for the CLI."""
    return _run(llama, tmp_path_factory.mktemp("export"), positions="all", n_trials=3)


def _trial_steering(llama: SteerableModel, run: Path, number: int) -> list[Addition]:
    cfg = load_config(run / "config.yaml")
    trial = load_run_study(cfg, run).trials[number]
    cand = Candidate.from_record(trial.user_attrs["candidate"])
    return cand.steering(llama, vector_cache(cfg, load_data(cfg), run))


def _read(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Metadata and tensors of a GGUF file, through gguf's own reader."""
    reader = gguf.GGUFReader(path)
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    tensors = {}
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        tensors[t.name] = np.array(t.data).reshape(-1)
        assert list(t.shape) == [tensors[t.name].size]  # one dimension: [d_model]
    return meta, tensors


def _pair_vector(llama: SteerableModel, layer: int) -> SteeringVector:
    return SteeringVector.from_pair(llama, "The bride and the groom", "", layer)


# --- the steering layer ---------------------------------------------------------------------------------------


def test_directions_bake_in_coefficient_and_mask_and_shift_the_layer_by_one(llama: SteerableModel) -> None:
    v2, v3 = _pair_vector(llama, 2), _pair_vector(llama, 3)
    steering = [
        Addition(v2, 3.0, ALL, frac=0.5),
        Addition(v3, -2.0, Positions.parse("from:0"), mask=MaskMode.RANDOM),  # from:0 is every position too
        Addition(v3, 0.5, ALL),  # a second addition at layer 3 is summed into the same direction
    ]
    got = control_directions(steering, N_LAYER)
    d = llama.d_model
    first_half = torch.cat([torch.ones(d // 2), torch.zeros(d - d // 2)])
    random_mask = steering[1].dim_mask()
    assert sorted(got) == [1, 2]  # resid_pre 2 and 3 are the outputs of blocks 1 and 2
    torch.testing.assert_close(got[1], 3.0 * v2.activations.sum(0) * first_half)
    torch.testing.assert_close(got[2], -2.0 * v3.activations.sum(0) * random_mask + 0.5 * v3.activations.sum(0))
    assert all(t.dtype == torch.float32 and t.shape == (d,) for t in got.values())


@pytest.mark.parametrize(
    ("layer", "positions", "message"),
    [
        (2, "front", "positions 'front'"),
        (2, "from:1", "positions 'from:1'"),
        (1, "all", "layer 1 has no llama.cpp control-vector slot"),
        (0, "all", "layer 0 has no llama.cpp control-vector slot"),
    ],
)
def test_what_llama_cpp_cannot_express_is_refused(
    llama: SteerableModel, layer: int, positions: str, message: str
) -> None:
    add = Addition(_pair_vector(llama, layer), 4.0, Positions.parse(positions))
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(".", r"\.")):
        control_directions([add], N_LAYER)


def test_gguf_round_trip(llama: SteerableModel, tmp_path: Path) -> None:
    directions = {1: torch.randn(llama.d_model), 2: torch.randn(llama.d_model)}
    path = tmp_path / "v.gguf"
    write_control_vector(path, directions, hint=model_hint(llama), metadata={"steersearch.trial": 7, "x.s": "hi"})
    meta, tensors = _read(path)
    assert meta["general.architecture"] == "controlvector"
    assert meta["controlvector.model_hint"] == "llama"
    assert meta["controlvector.layer_count"] == 2
    assert meta["steersearch.trial"] == 7 and meta["x.s"] == "hi"
    assert sorted(tensors) == ["direction.1", "direction.2"]
    for n, vec in directions.items():
        np.testing.assert_array_equal(tensors[f"direction.{n}"], vec.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["v.gguf"]  # atomic: no temporary file left
    with pytest.raises(ExportError, match="direction.0"):
        write_control_vector(tmp_path / "w.gguf", {0: torch.zeros(4)}, hint="llama")


def test_llama_cpp_application_equals_our_steering(llama: SteerableModel) -> None:
    """llama.cpp adds direction.N to the output of block N at every position (build_cvec after the residual
    add); done that way on the HF blocks, the exported directions give the logits our hooks give."""
    steering = [Addition(_pair_vector(llama, 2), 6.0, ALL, frac=0.5), Addition(_pair_vector(llama, 3), -3.0, ALL)]
    directions = control_directions(steering, N_LAYER)
    tokens = torch.tensor([[llama.bos_token_id, *llama.encode("I went up to my friend and said")[1:]]])

    def add_after(direction: torch.Tensor):  # type: ignore[no-untyped-def]
        def hook(_module, _args, output):  # type: ignore[no-untyped-def]
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden + direction.to(hidden.dtype)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    with torch.no_grad():
        plain = llama.hf(tokens).logits
        with steer(llama, steering):
            ours = llama.hf(tokens).logits
        handles = [llama.blocks[n].register_forward_hook(add_after(d)) for n, d in directions.items()]
        try:
            theirs = llama.hf(tokens).logits
        finally:
            for h in handles:
                h.remove()
    assert (ours - plain).abs().max() > 1e-2  # the steering does something
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


# --- the command ----------------------------------------------------------------------------------------------


def test_export_gguf_writes_the_best_trial(
    llama: SteerableModel, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = json.loads((run / "best.json").read_text())["number"]
    code, out, err = run_cli(capsys, "export", str(run), "--format", "gguf")
    default = run / "exports" / f"trial_{best:05d}.gguf"
    assert code == 0, err
    assert str(default) in out and "--control-vector" in out
    meta, tensors = _read(default)
    steering = _trial_steering(llama, run, best)
    (add,) = steering
    assert meta["general.architecture"] == "controlvector" and meta["controlvector.model_hint"] == "llama"
    assert meta["controlvector.layer_count"] == 1 and meta["steersearch.trial"] == best
    assert meta["steersearch.run"] == str(run)
    assert list(tensors) == [f"direction.{add.layer - 1}"]
    d = llama.d_model
    mask = torch.cat([torch.ones(d // 2), torch.zeros(d - d // 2)])  # frac 0.5, first dims
    expected = add.coeff * add.vector.activations.sum(0) * mask
    np.testing.assert_allclose(tensors[f"direction.{add.layer - 1}"], expected.numpy(), rtol=1e-6, atol=1e-6)
    # -o, and a trial by number (--trial N and RUN:N alike)
    other = (best + 1) % 3
    for argv in (["--trial", str(other)], []):
        target = tmp_path / f"sub/{len(argv)}.gguf"
        spec = str(run) if argv else f"{run}:{other}"
        code, _, err = run_cli(capsys, "export", spec, *argv, "--format", "gguf", "-o", str(target))
        assert code == 0, err
        assert _read(target)[0]["steersearch.trial"] == other


def test_export_safetensors_applies_as_found(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "export", str(run), "--trial", "1", "--format", "safetensors", "-o", str(tmp_path / "v")
    )
    assert code == 0, err
    assert str(tmp_path / "v.safetensors") in out
    vec = SteeringVector.load(tmp_path / "v")
    meta = vec.metadata
    assert meta["trial"] == 1 and meta["positions"] == "all" and meta["frac"] == 0.5 and meta["mask"] == "first"
    gen = ["--json", "--max-new-tokens", "6", "--n", "2"]
    code, found, _ = run_cli(capsys, "generate", "--vector", f"{run}:1", *gen)
    assert code == 0
    flags = ["--coeff", str(meta["coeff"]), "--frac", "0.5", "--positions", "all", "--config", str(run / "config.yaml")]
    code, saved, err = run_cli(capsys, "generate", "--vector", str(tmp_path / "v"), *flags, *gen)
    assert code == 0, err
    assert json.loads(saved)["steered"] == json.loads(found)["steered"] != json.loads(found)["unsteered"]


def test_front_positions_are_refused_in_one_line(
    llama: SteerableModel, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    front = _run(llama, run.parent.parent, positions="front", n_trials=1)
    capsys.readouterr()  # the search's progress bar
    code, out, err = run_cli(capsys, "export", str(front), "--format", "gguf")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "positions 'front'" in err and "no llama.cpp equivalent" in err and "--format safetensors" in err
    assert not (front / "exports").exists()
    assert run_cli(capsys, "export", str(front), "--format", "safetensors")[0] == 0  # kept as found


def test_bad_input_is_one_line_exit_2(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_winner = tmp_path / "no_winner"
    shutil.copytree(run, no_winner)
    (no_winner / "best.json").write_text("{}")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        ([str(tmp_path / "missing"), "--format", "gguf"], "is not a run folder"),
        ([str(no_winner), "--format", "gguf"], "no best trial yet"),
        ([str(run), "--trial", "99", "--format", "gguf"], "no trial 99"),
        ([f"{run}:1", "--trial", "2", "--format", "gguf"], "name different trials"),
        ([str(run), "--format", "onnx"], "invalid choice: 'onnx'"),
        ([str(run), "--format", "gguf", "-o", str(a_file / "v.gguf")], "is not a folder"),
        ([str(run), "--format", "gguf", "-o", str(tmp_path)], "is a folder"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, "export", *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, (argv, err)
