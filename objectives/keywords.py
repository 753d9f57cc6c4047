"""ActAdd's legacy measure: how many completions mention any word of a list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeywordScore:
    rate: float  # fraction of completions containing at least one keyword
    mean_count: float  # keyword occurrences per completion
    n: int


class KeywordRate:
    """Fraction of completions that contain any keyword (whole words, case-insensitive).

    Example:
        >>> KeywordRate(["wedding", "bride"]).score(["The bride smiled.", "It rained."]).rate
        0.5
    """

    def __init__(self, keywords: Sequence[str]) -> None:
        words = [w.strip() for w in keywords if w.strip()]
        if not words:
            raise ValueError("keyword list is empty")
        alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
        self._pattern = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)
        self.keywords = tuple(words)

    def count(self, text: str) -> int:
        return len(self._pattern.findall(text))

    def score(self, completions: Sequence[str]) -> KeywordScore:
        if not completions:
            raise ValueError("no completions to score")
        counts = [self.count(c) for c in completions]
        n = len(counts)
        return KeywordScore(rate=sum(c > 0 for c in counts) / n, mean_count=sum(counts) / n, n=n)
