"""Per-item metric values: one metric as a statistic over a subset of its items, so it can be resampled.

The search needs each metric's value on all items; the held-out comparison needs the same metric on
bootstrap resamples of the items. Both come from one ``Items``, so the comparison measures exactly what
the search optimised. Items are completions for text metrics, neutral texts for perplexity, off-target
prompts for KL. A corpus-level metric (distinct-n) is not a mean over items: it is marked
``resample=False`` and reported as a point estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

Index = np.ndarray | None
"""Item indices to compute a metric on (with repeats, for a bootstrap); ``None`` means every item once."""


@dataclass(frozen=True)
class Items:
    """One metric's items: ``stat(None)`` is its value, ``stat(idx)`` its value on the items ``idx``."""

    n: int
    stat: Callable[[Index], float]
    resample: bool = True

    @property
    def value(self) -> float:
        return self.stat(None)


def tensor_mean(values: Tensor) -> Items:
    """The mean of a ``[n]`` tensor of per-item values."""
    return Items(len(values), lambda idx: float(values.mean() if idx is None else values[idx].mean()))


def list_mean(values: Sequence[float]) -> Items:
    """The mean of per-item Python floats (summed in order, as ``sum(values) / len(values)``)."""
    vals = list(values)
    return Items(len(vals), lambda idx: sum(vals) / len(vals) if idx is None else sum(vals[i] for i in idx) / len(idx))


def ratio_of_sums(num: Tensor, den: Tensor) -> Items:
    """``sum(num) / sum(den)`` over the items (a per-token or per-position mean of grouped items)."""
    return Items(len(num), lambda idx: float(num.sum() / den.sum() if idx is None else num[idx].sum() / den[idx].sum()))


def point(value: float) -> Items:
    """A value that is not a statistic of resamplable items (a corpus-level or single-batch measure)."""
    return Items(1, lambda idx: value, resample=False)
