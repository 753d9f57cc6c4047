from __future__ import annotations

import pytest
import torch

from steering import Addition, GenerationConfig, SteeringVector, generate, generate_candidates
from steering.generate import decode_loop
from steering.model import SteerableModel

PROMPTS = ["I went up to my friend and said", "The bride", "She hates the rain, but"]


def _steer(model: SteerableModel, coeff: float = 4.0) -> list[Addition]:
    return [Addition(SteeringVector.from_pair(model, "The bride and the groom danced", "", layer=1), coeff)]


def test_shape_and_reproducibility(tiny: SteerableModel) -> None:
    cfg = GenerationConfig(max_new_tokens=8, n=3, seed=7)
    a = generate(tiny, PROMPTS, _steer(tiny), cfg)
    assert len(a) == len(PROMPTS) and all(len(row) == 3 for row in a)
    assert all(isinstance(s, str) for row in a for s in row)
    assert a == generate(tiny, PROMPTS, _steer(tiny), cfg)


def test_independent_of_batch_size(tiny: SteerableModel) -> None:
    big = GenerationConfig(max_new_tokens=8, n=3, seed=7, batch_size=64)
    small = GenerationConfig(max_new_tokens=8, n=3, seed=7, batch_size=2)
    assert generate(tiny, PROMPTS, _steer(tiny), big) == generate(tiny, PROMPTS, _steer(tiny), small)


def test_seed_changes_samples(tiny: SteerableModel) -> None:
    cfg = dict(max_new_tokens=8, n=4, temperature=1.0, top_p=1.0, freq_penalty=0.0)
    a = generate(tiny, PROMPTS, [], GenerationConfig(seed=0, **cfg))
    b = generate(tiny, PROMPTS, [], GenerationConfig(seed=1, **cfg))
    assert a != b
    assert len({s for row in a for s in row}) > len(PROMPTS)  # samples of one prompt differ


def test_greedy_unsteered_matches_hf_generate(tiny: SteerableModel) -> None:
    cfg = GenerationConfig(max_new_tokens=10, n=1, temperature=0.0, freq_penalty=0.0)
    ours = generate(tiny, PROMPTS, [], cfg)
    for prompt, row in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([tiny.encode(prompt)])
        out = tiny.hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=10,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=tiny.bos_token_id,
        )
        new = out[0, ids.shape[1] :].tolist()
        if tiny.tokenizer.eos_token_id in new:
            new = new[: new.index(tiny.tokenizer.eos_token_id)]
        assert row[0] == tiny.tokenizer.decode(new, skip_special_tokens=True)


def test_candidates_batch_equals_separate_calls(tiny: SteerableModel) -> None:
    cfg = GenerationConfig(max_new_tokens=8, n=2, seed=3, batch_size=5)
    cands = [[], _steer(tiny, 2.0), _steer(tiny, 8.0)]
    together = generate_candidates(tiny, PROMPTS, cands, cfg)
    for k, cand in enumerate(cands):
        assert together[k] == generate(tiny, PROMPTS, cand, cfg)


def test_steering_changes_text(tiny: SteerableModel) -> None:
    cfg = GenerationConfig(max_new_tokens=10, n=2, seed=0)
    assert generate(tiny, PROMPTS, [], cfg) != generate(tiny, PROMPTS, _steer(tiny, 8.0), cfg)


def test_frequency_penalty_reduces_repetition(tiny: SteerableModel) -> None:
    ids, mask = tiny.left_padded(PROMPTS)

    def most_repeated(penalty: float) -> float:
        cfg = GenerationConfig(max_new_tokens=20, temperature=0.0, freq_penalty=penalty)
        tokens = decode_loop(tiny, ids, mask, [[]], [0] * len(PROMPTS), cfg).tolist()
        return sum(max(row.count(t) for t in row) for row in tokens) / len(tokens)

    assert most_repeated(0.0) > 2  # greedy on a random model repeats itself
    assert most_repeated(5.0) < most_repeated(0.0)


@pytest.mark.parametrize(
    "field,value", [("n", 0), ("top_p", 0.0), ("temperature", -1.0), ("max_new_tokens", 0), ("batch_size", 0)]
)
def test_bad_config(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GenerationConfig(**{field: value})


def test_empty_prompt_is_an_error(tiny: SteerableModel) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        generate(tiny, ["ok", ""], [])


def test_first_sample_extends_an_earlier_call_exactly(tiny: SteerableModel) -> None:
    full = generate(tiny, PROMPTS, _steer(tiny), GenerationConfig(max_new_tokens=6, n=5, seed=2))
    head = generate(tiny, PROMPTS, _steer(tiny), GenerationConfig(max_new_tokens=6, n=2, seed=2))
    tail = generate(tiny, PROMPTS, _steer(tiny), GenerationConfig(max_new_tokens=6, n=3, seed=2, first_sample=2))
    assert [h + t for h, t in zip(head, tail, strict=True)] == full
