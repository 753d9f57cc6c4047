from __future__ import annotations

import pytest
import torch

from steering.model import ModelLoadError, SteerableModel, load_model


def test_pristine_hf_shares_weights_with_bridge_and_gives_same_logits(tiny: SteerableModel) -> None:
    tokens = torch.tensor([tiny.encode("The bride and the groom danced")])
    with torch.no_grad():
        hf_logits = tiny.hf(tokens).logits
        bridge_logits = tiny.bridge(tokens)
    assert torch.allclose(hf_logits, bridge_logits, atol=1e-5)
    bridge_ptrs = {p.data_ptr() for p in tiny.bridge.original_model.parameters()}
    assert {p.data_ptr() for p in tiny.hf.parameters()} <= bridge_ptrs
    # The pristine tree keeps plain HF blocks; the bridge rewrote its own.
    assert type(tiny.blocks[0]).__name__ == "GPT2Block"


def test_encode_prepends_bos_like_transformer_lens(tiny: SteerableModel) -> None:
    assert tiny.encode("I went up")[0] == tiny.bos_token_id
    assert tiny.encode("I went up") == tiny.bridge.to_tokens("I went up")[0].tolist()


def test_left_padded_batch(tiny: SteerableModel) -> None:
    ids, mask = tiny.left_padded(["a", "The bride and the groom"])
    assert ids.shape == mask.shape
    assert mask[1].all() and not mask[0, 0]
    assert ids[0, -2:].tolist() == tiny.encode("a")


@pytest.mark.parametrize("layer", [-1, 2, 99])
def test_check_layer_names_range(tiny: SteerableModel, layer: int) -> None:
    with pytest.raises(ValueError, match=r"layers 0\.\.1"):
        tiny.check_layer(layer)


def test_missing_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope" / "model"))


def test_directory_without_config_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)


def test_local_directory_round_trip(tiny: SteerableModel, tmp_path) -> None:
    tiny.hf.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    tokens = torch.tensor([tiny.encode("The team won")])
    with torch.no_grad():
        assert torch.allclose(loaded.hf(tokens).logits, tiny.hf(tokens).logits, atol=1e-6)
    assert loaded.n_layers == tiny.n_layers
