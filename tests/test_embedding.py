from __future__ import annotations

from pathlib import Path

import pytest

from objectives.embedding import EmbeddingSimilarity

pytestmark = pytest.mark.scorer


def test_on_topic_is_more_similar_and_blank_is_zero(tmp_path: Path) -> None:
    sim = EmbeddingSimilarity()
    gold = sim.references(["The bride and groom exchanged vows at the wedding.", "They married in June."])
    s = sim.score(["My sister's wedding was beautiful; the bride cried.", "The stock market fell today.", ""], gold)
    assert s[0] > s[1] + 0.2 and s[2] == 0
    with pytest.raises(ValueError, match="gold set is empty"):
        sim.references([])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmbeddingSimilarity(tmp_path / "missing")
