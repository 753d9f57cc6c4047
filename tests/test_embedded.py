"""The shipped tiny-topics model: loads offline, has the promised tokenizer, and really steers."""

from __future__ import annotations

import json

import pytest

from objectives.gold import load_gold_set, load_split
from search.cli.demo import CONFIGS, DEMO_PROMPTS, DemoSettings, measure_effect
from steering import EMBEDDED_MODEL_DIR, load_model
from steering.model import SteerableModel

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded() -> SteerableModel:
    return load_model()


def test_shape_and_tokenizer(embedded: SteerableModel) -> None:
    assert embedded.n_layers == 4 and embedded.d_model == 256
    tok = embedded.tokenizer
    assert tok.bos_token_id == len(tok) - 1  # the special token is last, not id 0
    assert embedded.single_token_id(" ") >= 0  # ActAdd's filler is one token
    assert (EMBEDDED_MODEL_DIR / "MODEL_CARD.md").exists()
    assert json.loads((EMBEDDED_MODEL_DIR / "training.json").read_text())["steps"] > 0


def test_demo_prompts_are_not_training_text() -> None:
    from steering.embedded.corpus import generate_corpus

    prompts = load_split(CONFIGS / "gold" / "prompts.yaml")
    corpus = "\n".join(generate_corpus(2000, seed=0))
    assert not [p for p in (*prompts.search, *prompts.validation, *prompts.heldout) if p in corpus]


def test_it_really_steers(embedded: SteerableModel) -> None:
    """The foundation issue's bar: >= 3x the unsteered wedding-word rate and >= +25 points, n = 64."""
    prompts = load_split(CONFIGS / "gold" / "prompts.yaml").search[:DEMO_PROMPTS]
    keywords = load_gold_set(CONFIGS / "gold" / "weddings.yaml").keywords
    effect = measure_effect(embedded, DemoSettings(), prompts, keywords)
    assert effect.n == 64
    assert effect.steered_rate >= 3 * effect.unsteered_rate
    assert effect.steered_rate - effect.unsteered_rate >= 0.25
