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


def test_first_prompt_continues_an_earlier_call_on_fewer_prompts(tiny: SteerableModel) -> None:
    full = generate(tiny, PROMPTS, _steer(tiny), GenerationConfig(max_new_tokens=6, n=2, seed=2))
    rest = generate(tiny, PROMPTS[1:], _steer(tiny), GenerationConfig(max_new_tokens=6, n=2, seed=2, first_prompt=1))
    assert rest == full[1:]
    assert generate(tiny, PROMPTS[1:], _steer(tiny), GenerationConfig(max_new_tokens=6, n=2, seed=2)) != full[1:]


def test_a_vector_longer_than_the_prompt_adds_to_prompt_positions_only(tiny: SteerableModel) -> None:
    """Front additions belong to the prompt pass. With a 2-token prompt and an 8-position vector, a decode
    step that also received the vector would change the text from the second generated token on."""
    from tests.reference import uncached_greedy

    vec = SteeringVector.from_pair(tiny, "The bride and the groom danced at the wedding", "", layer=1)
    ids = tiny.encode("The")
    assert vec.n_pos > len(ids) + 3
    cfg = GenerationConfig(max_new_tokens=6, n=1, temperature=0.0, freq_penalty=0.0)
    ours = generate(tiny, ["The"], [Addition(vec, 4.0)], cfg)[0][0]
    expected = uncached_greedy(tiny, ids, 6, front=4.0 * vec.activations, layer=1)
    assert ours == tiny.tokenizer.decode(expected, skip_special_tokens=True)
    # The reference is sensitive to it: adding the vector's later positions to generated tokens changes text.
    leaky = _leaky_greedy(tiny, ids, 6, 4.0 * vec.activations, layer=1)
    assert leaky[0] == expected[0] and leaky[1:] != expected[1:]


def _leaky_greedy(model: SteerableModel, ids: list[int], n_new: int, front: torch.Tensor, layer: int) -> list[int]:
    """The wrong semantics: ``front`` added at positions 0..P-1 of the whole sequence, generated tokens too."""
    handle = model.blocks[layer].register_forward_pre_hook(
        lambda _m, args, kwargs: _add(args, kwargs, front), with_kwargs=True
    )
    try:
        seq = list(ids)
        with torch.no_grad():
            for _ in range(n_new):
                seq.append(int(model.hf(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    finally:
        handle.remove()
    return seq[len(ids) :]


def _add(args, kwargs, front):  # type: ignore[no-untyped-def]
    h = (args[0] if args else kwargs["hidden_states"]).clone()
    n = min(front.shape[0], h.shape[1])
    h[:, :n] += front[:n]
    return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
