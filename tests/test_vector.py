from __future__ import annotations

import pytest
import torch

from steering import SteeringVector
from steering.model import SteerableModel


def test_from_pair_right_pads_shorter_prompt_with_filler(tiny: SteerableModel) -> None:
    a, b = "The bride and the groom", "The"
    vec = SteeringVector.from_pair(tiny, a, b, layer=1)
    assert vec.n_pos == len(tiny.encode(a))
    assert vec.metadata == {"kind": "pair", "prompt_a": a, "prompt_b": b, "filler": " ", "model": tiny.name}
    # Equals the bridge's hook_resid_pre difference, with B padded by spaces.
    space = tiny.single_token_id(" ")
    tok_b = tiny.encode(b) + [space] * (vec.n_pos - len(tiny.encode(b)))
    _, cache = tiny.bridge.run_with_cache(torch.tensor([tiny.encode(a), tok_b]), names_filter="blocks.1.hook_resid_pre")
    acts = cache["blocks.1.hook_resid_pre"]
    assert torch.allclose(vec.activations, acts[0] - acts[1], atol=1e-5)
    assert vec.activations[0].abs().max() < 1e-6  # BOS is shared by both prompts


def test_empty_side_allowed_like_actadd(tiny: SteerableModel) -> None:
    vec = SteeringVector.from_pair(tiny, "weddings", "", layer=0)
    assert vec.n_pos == len(tiny.encode("weddings"))


def test_both_empty_is_an_error(tiny: SteerableModel) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        SteeringVector.from_pair(tiny, "", "", layer=0)


def test_filler_must_be_one_token(tiny: SteerableModel) -> None:
    with pytest.raises(ValueError, match="exactly 1"):
        SteeringVector.from_pair(tiny, "a b", "a", layer=0, filler="the bride")


def test_layer_out_of_range(tiny: SteerableModel) -> None:
    with pytest.raises(ValueError, match="out of range"):
        SteeringVector.from_pair(tiny, "a", "b", layer=5)


def test_save_load_round_trip(tiny: SteerableModel, tmp_path) -> None:
    vec = SteeringVector.from_pair(tiny, "Love", "Hate", layer=1)
    vec.save(tmp_path / "v")
    assert (tmp_path / "v.safetensors").exists() and (tmp_path / "v.json").exists()
    back = SteeringVector.load(tmp_path / "v.safetensors")
    assert torch.equal(back.activations, vec.activations)
    assert back.layer == 1 and back.metadata == vec.metadata


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SteeringVector.load(tmp_path / "nothing")


def test_from_tensor_accepts_1d_and_2d() -> None:
    assert SteeringVector.from_tensor(torch.ones(8), layer=0).activations.shape == (1, 8)
    assert SteeringVector.from_tensor(torch.ones(3, 8), layer=0).n_pos == 3
    with pytest.raises(ValueError, match="n_pos, d_model"):
        SteeringVector(torch.ones(2, 3, 4), layer=0)
