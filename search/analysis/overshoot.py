"""Overshoot: does a fraction of the residual dimensions beat all of them, and only where all of them overshoot?

ActAdd found that adding only the first 70% of the residual dimensions steered GPT-2 XL toward weddings more
than adding all of them. If that is overshooting, the fraction acts as a smaller coefficient: frac < 1 should
win only at coefficients where frac 1 is already past its best, the best fraction should fall as the
coefficient grows, and a random subset of the same size should do what the first-k slice does.

``run_overshoot`` measures the grid an ``OvershootSpec`` describes (layers × coefficients × fractions, first-k
and random masks with several mask seeds) on one split with ``SplitEvaluator`` (the metrics every comparison
uses, bootstrap CIs), every cell on the same prompts and sampling seeds, so any two cells are paired. All
cells' completions share generation batches and encoder passes (``SplitEvaluator.measure_many``). It then
computes, per layer and metric (wedding-word rate, BERTScore F1, the fluency part of ``steer_score``): each
compared fraction against the reference at every coefficient (paired difference, 95% CI, verdict), random vs
first-k at equal fraction, the best fraction at each coefficient, and the Spearman rank correlation between
the metrics across the grid; ``statements`` says what they show in words.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objectives.steer_score import DERIVED, NEEDS
from search.analysis.evaluation import (
    Evaluation,
    Interval,
    Measured,
    Method,
    Paired,
    SplitEvaluator,
    joint_draws,
    verdict,
)
from search.config import from_dict
from search.config.features import OvershootSpec
from search.outputs import write_text
from steering import Addition, MaskMode, Positions, SteeringVector

logger = logging.getLogger(__name__)

METRICS = ("keyword_rate", "bertscore_f1", "fluency_score")
"""What every cell is judged on: the wedding-word rate (ActAdd's measure), BERTScore F1 against the gold
passages, and the fluency part of ``steer_score`` (completion perplexity and repetition against unsteered)."""

LABELS = {"keyword_rate": "wedding-word rate", "bertscore_f1": "BERTScore F1", "fluency_score": "fluency part"}

FIRST, RANDOM = MaskMode.FIRST.value, MaskMode.RANDOM.value


@dataclass(frozen=True)
class Cell:
    """One grid cell: the addition's setting, how much of the full vector's norm its mask keeps, and its
    evaluation (every metric with a bootstrap CI)."""

    layer: int
    coeff: float
    frac: float
    mask: str
    mask_seed: int
    norm_ratio: float
    evaluation: Evaluation

    @property
    def effective_coeff(self) -> float:
        """The coefficient at which the full vector has this cell's norm."""
        return self.coeff * self.norm_ratio


@dataclass(frozen=True)
class FracTest:
    """``frac`` minus ``reference`` (both at ``coeff``, mask ``mask``; random: the mean over mask seeds) of one
    metric, paired over the same completions' prompts and seeds."""

    layer: int
    coeff: float
    mask: str
    metric: str
    frac: float
    reference: float
    paired: Paired


@dataclass(frozen=True)
class MaskTest:
    """Random subsets (mean over mask seeds) minus the first-k slice of the same size, one metric, paired."""

    layer: int
    coeff: float
    frac: float
    metric: str
    paired: Paired


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of two metrics across the grid's cells (``scope``: every cell, or a layer's)."""

    a: str
    b: str
    scope: str
    rho: float | None  # None where a metric is constant over the cells
    n: int


@dataclass(frozen=True)
class OvershootReport:
    """What ``overshoot.json`` holds (``overshoot.csv``: one row per cell)."""

    pair: tuple[str, str]
    split: str
    prompts: int
    samples: int
    positions: str
    layers: tuple[int, ...]
    coeffs: tuple[float, ...]
    fracs: tuple[float, ...]
    mask_seeds: tuple[int, ...]
    reference: float
    unsteered: Evaluation
    cells: tuple[Cell, ...]
    frac_tests: tuple[FracTest, ...]
    mask_tests: tuple[MaskTest, ...]
    correlations: tuple[Correlation, ...]
    statements: tuple[str, ...]
    seconds: float

    FILE = "overshoot.json"
    CSV = "overshoot.csv"

    @property
    def masks(self) -> tuple[str, ...]:
        return (FIRST, RANDOM) if self.mask_seeds and any(f < 1 for f in self.fracs) else (FIRST,)

    def cells_at(self, layer: int, coeff: float, frac: float, mask: str) -> list[Cell]:
        """The cells of one setting: one for first-k, one per mask seed for random; at frac 1 every mask is
        every dimension, so both give the one first-k cell."""
        if frac >= 1.0:
            mask = FIRST
        return [c for c in self.cells if (c.layer, c.coeff, c.frac, c.mask) == (layer, coeff, frac, mask)]

    def value(self, layer: int, coeff: float, frac: float, mask: str, metric: str) -> float:
        """The metric at one setting (random: the mean over mask seeds)."""
        return float(np.mean([c.evaluation.metrics[metric].mean for c in self.cells_at(layer, coeff, frac, mask)]))

    def best_frac(self, layer: int, coeff: float, mask: str, metric: str) -> float:
        """The fraction with the highest point value at one coefficient (the larger fraction on a tie)."""
        return max(self.fracs, key=lambda f: (self.value(layer, coeff, f, mask, metric), f))

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))
        write_text(run_dir / self.CSV, self.csv())

    def csv(self) -> str:
        """One row per cell: the setting, the norm kept, and each metric's mean and 95% CI."""
        shown = [m for m in (*METRICS, "ppl_ratio", "kl", "steer_score") if m in self.unsteered.metrics]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            ["layer", "coeff", "frac", "mask", "mask_seed", "norm_ratio"]
            + [f"{m}{s}" for m in shown for s in ("", "_lo", "_hi")]
        )
        rows = [(None, self.unsteered)] + [(c, c.evaluation) for c in self.cells]
        for cell, e in rows:
            head = (
                ["", 0, "", "unsteered", "", ""]
                if cell is None
                else [cell.layer, cell.coeff, cell.frac, cell.mask, cell.mask_seed, f"{cell.norm_ratio:.4f}"]
            )
            vals = [f"{x:.4f}" for m in shown for x in _triple(e.metrics.get(m))]
            w.writerow(head + vals)
        return buf.getvalue()

    @classmethod
    def load(cls, run_dir: Path) -> OvershootReport | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None


def _triple(v: Interval | None) -> tuple[float, float, float]:
    return (v.mean, v.lo, v.hi) if v is not None else (float("nan"),) * 3


Stat = Callable[[dict[str, float]], float]


def paired_mean_difference(a: Sequence[Measured], b: Measured, stat: Stat, *, resamples: int, seed: int) -> Paired:
    """The mean of ``stat`` over ``a`` (e.g. one random mask per seed) minus ``stat(b)``, with a paired bootstrap
    CI: every resample draws one set of item indices and applies it to every measurement (as
    ``paired_difference``, which this equals for one ``a``)."""

    def diff(draw: dict[int, np.ndarray] | None) -> float:
        return float(np.mean([stat(m.point(draw)) for m in a])) - stat(b.point(draw))

    draws = [diff(d) for d in joint_draws(b, resamples, seed)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    d = Interval(diff(None), float(lo), float(hi))
    return Paired(d, verdict(d))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""

    def ranks(v: Sequence[float]) -> np.ndarray:
        arr = np.asarray(v, dtype=float)
        order = arr.argsort(kind="stable")
        r = np.empty(len(arr))
        r[order] = np.arange(len(arr), dtype=float)
        for value in np.unique(arr):  # ties share their mean rank
            tied = arr == value
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if len(rx) < 3 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def run_overshoot(spec: OvershootSpec, evaluator: SplitEvaluator, *, chunk: int = 8) -> OvershootReport:
    """Measure the grid (see the module docstring); ``evaluator`` is on ``spec.split`` with ``spec.samples``
    completions of each of its prompts. Cells are measured ``chunk`` at a time (one progress line each)."""
    model, start = evaluator.model, time.perf_counter()
    positions = Positions.parse(spec.positions)
    settings: list[Addition] = []
    for layer in spec.layers:
        model.check_layer(layer)
        vec = SteeringVector.from_pair(model, spec.pair[0], spec.pair[1], layer)
        for coeff in spec.coeffs:
            for frac in spec.fracs:
                settings.append(Addition(vec, coeff, positions, frac, MaskMode.FIRST))
                if frac < 1.0:
                    settings += [Addition(vec, coeff, positions, frac, MaskMode.RANDOM, s) for s in spec.mask_seeds]
    methods = [Method("unsteered", [])] + [Method(_name(a), [a]) for a in settings]
    measured: list[Measured] = []
    for lo in range(0, len(methods), chunk):
        measured += evaluator.measure_many(methods[lo : lo + chunk])
        logger.info("overshoot: %d/%d cells, %.0f s", len(measured) - 1, len(settings), time.perf_counter() - start)
    base, by_setting = measured[0], measured[1:]
    cells = tuple(
        Cell(
            a.layer,
            a.coeff,
            a.frac,
            a.mask.value,
            a.mask_seed if a.mask is MaskMode.RANDOM else 0,
            float(a.delta().norm() / (a.coeff * a.vector.activations.norm())),
            evaluator.evaluation(m),
        )
        for a, m in zip(settings, by_setting, strict=True)
    )
    raw = {(c.layer, c.coeff, c.frac, c.mask, c.mask_seed): m for c, m in zip(cells, by_setting, strict=True)}

    def group(layer: int, coeff: float, frac: float, mask: str) -> list[Measured]:
        if frac >= 1.0 or mask == FIRST:
            return [raw[(layer, coeff, frac, FIRST, 0)]]
        return [raw[(layer, coeff, frac, RANDOM, s)] for s in spec.mask_seeds]

    def stat(metric: str) -> Stat:
        return (lambda point: evaluator.full(point)[metric]) if metric in DERIVED else (lambda point: point[metric])

    def paired(metric: str, a: list[Measured], b: Measured) -> Paired:
        keys = NEEDS if metric in DERIVED else {metric}  # resample only what the metric is computed from
        a, b = [_only(m, keys) for m in a], _only(b, keys)
        return paired_mean_difference(a, b, stat(metric), **boot)

    boot = {"resamples": evaluator.cfg.compare.bootstrap, "seed": evaluator.cfg.compare.seed}
    masks = (FIRST, RANDOM) if spec.mask_seeds else (FIRST,)
    frac_tests = tuple(
        FracTest(
            layer,
            coeff,
            mask,
            metric,
            frac,
            spec.reference,
            paired(metric, group(layer, coeff, frac, mask), group(layer, coeff, spec.reference, FIRST)[0]),
        )
        for layer in spec.layers
        for mask in masks
        for metric in METRICS
        for frac in spec.compared
        for coeff in spec.coeffs
        if frac != spec.reference and not (mask == RANDOM and frac >= 1.0)
    )
    mask_tests = tuple(
        MaskTest(
            layer,
            coeff,
            frac,
            metric,
            paired(metric, group(layer, coeff, frac, RANDOM), group(layer, coeff, frac, FIRST)[0]),
        )
        for layer in spec.layers
        for metric in METRICS
        for coeff in spec.coeffs
        for frac in spec.fracs
        if frac < 1.0 and spec.mask_seeds
    )
    report = OvershootReport(
        pair=spec.pair,
        split=spec.split,
        prompts=len(evaluator.prompts),
        samples=evaluator.n,
        positions=str(positions),
        layers=spec.layers,
        coeffs=spec.coeffs,
        fracs=tuple(sorted(spec.fracs)),
        mask_seeds=spec.mask_seeds,
        reference=spec.reference,
        unsteered=evaluator.evaluation(base),
        cells=cells,
        frac_tests=frac_tests,
        mask_tests=mask_tests,
        correlations=_correlations(cells, spec.layers),
        statements=(),
        seconds=time.perf_counter() - start,
    )
    return dataclasses.replace(report, statements=tuple(statements(report)))


def _only(m: Measured, keys: set[str] | frozenset[str]) -> Measured:
    return Measured({k: v for k, v in m.items.items() if k in keys}, m.texts, m.prefix)


def _name(a: Addition) -> str:
    seed = f" seed {a.mask_seed}" if a.mask is MaskMode.RANDOM else ""
    return f"L{a.layer} c{a.coeff:g} frac {a.frac:g} {a.mask.value}{seed}"


def _correlations(cells: Sequence[Cell], layers: Sequence[int]) -> tuple[Correlation, ...]:
    out = []
    scopes = [("all cells", list(cells))] + [(f"layer {la}", [c for c in cells if c.layer == la]) for la in layers]
    for a, b in (
        ("keyword_rate", "bertscore_f1"),
        ("keyword_rate", "fluency_score"),
        ("bertscore_f1", "fluency_score"),
    ):
        for scope, chosen in scopes:
            xs = [c.evaluation.metrics[a].mean for c in chosen]
            ys = [c.evaluation.metrics[b].mean for c in chosen]
            rho = spearman(xs, ys)
            out.append(Correlation(a, b, scope, None if np.isnan(rho) else rho, len(chosen)))
        if len(layers) == 1:
            out = [c for c in out if c.scope == "all cells"]
    return tuple(out)


def _fmt_d(p: Paired) -> str:
    d = p.diff
    return f"{d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"


def statements(r: OvershootReport) -> list[str]:
    """What the grid shows, in words: per layer and metric, where each compared fraction beats, ties or loses
    to the reference; whether the best fraction moves with the coefficient; random vs first-k; and where the
    wedding-word rate and BERTScore disagree."""
    out: list[str] = []
    for layer in r.layers:
        for metric in METRICS:
            for mask in r.masks:
                tests = [t for t in r.frac_tests if (t.layer, t.metric, t.mask) == (layer, metric, mask)]
                for frac in sorted({t.frac for t in tests}):
                    by = {
                        v: [f"{t.coeff:g}" for t in tests if t.frac == frac and t.paired.verdict == v]
                        for v in ("beats", "ties", "loses")
                    }
                    said = "; ".join(f"{v} at coeff {', '.join(cs)}" for v, cs in by.items() if cs)
                    detail = ", ".join(f"c{t.coeff:g} {_fmt_d(t.paired)}" for t in tests if t.frac == frac)
                    out.append(
                        f"Layer {layer}, {LABELS[metric]}, {mask} mask: frac {frac:g} vs {r.reference:g}: {said} "
                        f"({detail})."
                    )
            best = [r.best_frac(layer, c, FIRST, metric) for c in r.coeffs]
            out.append(
                f"Layer {layer}, {LABELS[metric]}: best frac (first-k) by coefficient "
                + ", ".join(f"c{c:g} {f:g}" for c, f in zip(r.coeffs, best, strict=True))
                + f": {_trend(best, r.reference)}."
            )
            masked = [t.paired for t in r.mask_tests if (t.layer, t.metric) == (layer, metric)]
            if masked:
                counts = {v: sum(p.verdict == v for p in masked) for v in ("beats", "ties", "loses")}
                mean_abs = float(np.mean([abs(p.diff.mean) for p in masked]))
                out.append(
                    f"Layer {layer}, {LABELS[metric]}: random mask vs first-k at equal frac over {len(masked)} "
                    f"cells: random beats {counts['beats']}, ties {counts['ties']}, loses {counts['loses']} "
                    f"(mean |difference| {mean_abs:.3f})."
                )
    for c in r.correlations:
        if (c.a, c.b) == ("keyword_rate", "bertscore_f1"):
            out.append(
                f"Spearman rank correlation of {LABELS[c.a]} and {LABELS[c.b]} across {c.scope} (n={c.n}): "
                + (f"{c.rho:+.2f}." if c.rho is not None else "undefined (a metric is constant).")
            )
    out += _disagreements(r)
    return out


def _trend(best: Sequence[float], reference: float) -> str:
    if all(f == reference for f in best):
        return f"always {reference:g}: no fraction beats the whole vector at any coefficient"
    if len(set(best)) == 1:
        return f"always {best[0]:g}, at every coefficient: it does not move with the coefficient"
    if all(b <= a for a, b in zip(best, best[1:], strict=False)):
        return "falls as the coefficient grows, as overshooting predicts"
    if all(b >= a for a, b in zip(best, best[1:], strict=False)):
        return "rises with the coefficient, the opposite of overshooting"
    return "no monotone pattern"


def _disagreements(r: OvershootReport) -> list[str]:
    """Where the wedding-word rate and BERTScore F1 tell different stories: the best fraction at a coefficient,
    and the verdict of a fraction test."""
    out = []
    for layer in r.layers:
        spots = [
            f"c{c:g} (rate: {r.best_frac(layer, c, FIRST, 'keyword_rate'):g}, "
            f"F1: {r.best_frac(layer, c, FIRST, 'bertscore_f1'):g})"
            for c in r.coeffs
            if r.best_frac(layer, c, FIRST, "keyword_rate") != r.best_frac(layer, c, FIRST, "bertscore_f1")
        ]
        out.append(
            f"Layer {layer}: the best frac (first-k) under the wedding-word rate and under BERTScore "
            + (f"differ at {'; '.join(spots)}." if spots else "agree at every coefficient.")
        )
        verdicts = {(t.coeff, t.frac, t.mask, t.metric): t.paired.verdict for t in r.frac_tests if t.layer == layer}
        split = [
            f"c{c:g} frac {f:g} {m} (rate {v}, F1 {verdicts.get((c, f, m, 'bertscore_f1'))})"
            for (c, f, m, metric), v in verdicts.items()
            if metric == "keyword_rate" and verdicts.get((c, f, m, "bertscore_f1")) != v
        ]
        if split:
            out.append(
                f"Layer {layer}: the frac-vs-{r.reference:g} verdicts differ between the metrics at "
                + "; ".join(split)
                + "."
            )
    return out
