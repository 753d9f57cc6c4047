from __future__ import annotations

import pytest

from objectives.keywords import KeywordRate


def test_rate_and_count() -> None:
    metric = KeywordRate(["wedding", "bride", "groom"])
    s = metric.score(["The Bride and the groom.", "A WEDDING!", "Nothing here.", "weddingcake is not a word match"])
    assert s.rate == 0.5 and s.mean_count == 0.75 and s.n == 4


def test_whole_words_only() -> None:
    assert KeywordRate(["war"]).count("the warm award") == 0
    assert KeywordRate(["war"]).count("war, war.") == 2


def test_empty_inputs() -> None:
    with pytest.raises(ValueError, match="keyword list is empty"):
        KeywordRate([" "])
    with pytest.raises(ValueError, match="no completions"):
        KeywordRate(["a"]).score([])
