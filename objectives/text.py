"""Degeneration metrics on completions, so that "wedding wedding wedding" cannot win."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return _WORD.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(completions: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the whole set of completions (Li et al., 2016). 0 if none."""
    grams = [g for c in completions for g in _ngrams(words(c), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(completions: Sequence[str], n: int = 2) -> float:
    """Mean over completions of the fraction of n-grams that repeat an earlier n-gram of the same completion.

    0 for text that never repeats itself, towards 1 for "wedding wedding wedding ...". Completions too short
    to hold an n-gram count as 0.
    """
    if not completions:
        raise ValueError("no completions to score")
    rates = repetition_rates(completions, n)
    return sum(rates) / len(rates)


def repetition_rates(completions: Sequence[str], n: int = 2) -> list[float]:
    """Each completion's fraction of n-grams that repeat an earlier one (see ``repetition_rate``)."""
    rates = []
    for c in completions:
        grams = _ngrams(words(c), n)
        rates.append(1 - len(set(grams)) / len(grams) if grams else 0.0)
    return rates


def text_quality(completions: Sequence[str]) -> dict[str, float]:
    """``distinct_1``, ``distinct_2`` and ``rep_rate`` of a set of completions."""
    if not completions:
        raise ValueError("no completions to score")
    return {
        "distinct_1": distinct_n(completions, 1),
        "distinct_2": distinct_n(completions, 2),
        "rep_rate": repetition_rate(completions, 2),
    }
