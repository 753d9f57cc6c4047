from __future__ import annotations

import pytest

from objectives.text import distinct_n, repetition_rate, text_quality


def test_repeated_text_lowers_distinct_2_and_raises_rep_rate() -> None:
    varied = ["The bride smiled at the groom.", "We danced until the music stopped."]
    repeated = ["wedding wedding wedding wedding", "wedding wedding wedding wedding"]
    assert distinct_n(repeated, 2) < distinct_n(varied, 2)
    assert repetition_rate(repeated) > 0.5 > repetition_rate(varied) == 0.0


def test_distinct_counts_across_completions() -> None:
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert distinct_n(["a b c"], 1) == 1.0
    assert distinct_n([""], 2) == 0.0


def test_empty_completions_score_zero_not_nan() -> None:
    q = text_quality(["", "ok"])
    assert q == {"distinct_1": 1.0, "distinct_2": 0.0, "rep_rate": 0.0}
    with pytest.raises(ValueError, match="no completions"):
        text_quality([])
