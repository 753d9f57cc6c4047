"""``steersearch compare``: the fair comparison, on the test split, after selection on the validation split.

Held-out (test) prompts, seed ``compare.seed``, and held-out gold passages, neutral text and off-target prompts:
data neither the search nor selection saw. For a scalar objective the winner comes from selection
(``search.analysis.select``, run first if the folder has no current ``selection.json``); the rows are
unsteered, prompting (an instruction prefix asking for the target behaviour), every hand-written pair at its
tuned setting, every selection contender and, where ``steersearch analyze`` left a ``distill.json`` in the
folder, each distillation target's short pair that scored best on the search split, each scored on the same
prompts and seeds. Every metric gets a bootstrap 95% CI, and every row its paired difference from the tuned
hand-written pair selection held the winner against and from prompting, with "beats", "ties" or "loses". A
multi-objective study has no scalar to pair on: its rows are the Pareto-front contenders and the hand-written
pairs as written, each metric with a CI (selection's rule: ``search.analysis.select.maximin``).

Every row also says what it costs at inference: the tokens of context it adds to each prompt (prompting: its
prefix, as the model reads it; a steering vector: none, its cost is computing it once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from search.analysis.distill import DistillReport
from search.analysis.evaluation import Evaluation, Measured, Method, Paired, SplitEvaluator, build_heldout
from search.analysis.select import Selection, select_winner
from search.config import ExperimentConfig, from_dict
from search.outputs import write_text
from search.session import Scorers, load_run_study, vector_cache
from search.study import n_finished
from search.vectors import VectorCache
from steering import Addition, Positions, SteeringVector
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """What ``comparison.json`` holds: every method's held-out evaluation and a few completions each."""

    split: str
    prompts: tuple[str, ...]
    samples_per_prompt: int
    seed: int
    bootstrap_resamples: int
    methods: dict[str, Evaluation]
    examples: dict[str, tuple[str, ...]]
    winner: str | None = None  # selection's winner (a scalar objective)
    reference: str | None = None  # the tuned hand-written pair selection held the winner against
    prompting: str | None = None
    paired: dict[str, dict[str, Paired]] = field(default_factory=dict)  # row -> {reference or prompting: a - it}
    context_tokens: dict[str, float] = field(default_factory=dict)  # row -> tokens it adds to each prompt (mean)

    FILE = "comparison.json"

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Comparison | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None


def prompting_method(cfg: ExperimentConfig, gold_name: str) -> Method:
    prefix = cfg.compare.prefix if cfg.compare.prefix is not None else f"Let me tell you about {gold_name}. "
    return Method(f"prompting: {prefix.strip()!r}", [], prefix)


def context_tokens(model: SteerableModel, prompts: Sequence[str], method: Method) -> float:
    """The tokens of context ``method`` adds to each prompt, as the model reads it, averaged over ``prompts``:
    a prompting prefix costs its tokens on every call, a steering vector none (its cost is computing it once).

    Example:
        >>> context_tokens(model, ["I went up to my friend and said"], Method("p", [], "Be kind. "))
        3.0
    """
    if not method.prefix or not prompts:
        return 0.0
    extra = [len(model.encode_prompt(method.prefix + p)) - len(model.encode_prompt(p)) for p in prompts]
    return sum(extra) / len(extra)


def distilled_methods(model: SteerableModel, report: DistillReport) -> list[Method]:
    """Each distillation target's short pair with the best objective on the search split (over its lengths and
    coefficients), as a row added at the coefficient and positions distillation chose for it. It is
    chosen without the test split, so the test split judges it like any contender."""
    methods = []
    for i, target in enumerate(report.targets, 1):
        if not target.rows:
            continue
        best = max(target.rows, key=lambda r: r.best_search_objective)
        a, b = best.short.pair
        vector = SteeringVector.from_pair(model, a, b, target.layer)
        name = f"distilled from target {i}: {a!r} / {b!r} L{target.layer} c{best.coeff:.3g} at {target.positions}"
        methods.append(Method(name, [Addition(vector, best.coeff, Positions.parse(target.positions))]))
    return methods


def current_selection(
    cfg: ExperimentConfig, run_dir: Path, study: optuna.Study, heldout: SplitEvaluator, vectors: VectorCache
) -> Selection:
    """The folder's selection if it was made on the study as it is now (same number of finished trials, the
    same select settings and the same validation prompts), else a new one (saved)."""
    finished = n_finished(study)
    selection = Selection.load(run_dir)
    validation = heldout.on("validation")
    if (
        selection is not None
        and selection.trials == finished
        and selection.settings == dataclasses.asdict(cfg.select)
        and list(selection.prompts) == list(validation.prompts)
    ):
        return selection
    selection = dataclasses.replace(
        select_winner(cfg, study, validation, vectors),
        trials=finished,
        settings=dataclasses.asdict(cfg.select),
    )
    selection.save(run_dir)
    return selection


def run_compare(
    cfg: ExperimentConfig, run_dir: Path, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> Comparison:
    """Select the winner on validation (unless the folder's selection is current), evaluate every row on the
    test split and write ``run_dir/comparison.json`` (and the contenders' test values into ``selection.json``)."""
    if not (run_dir / "best.json").exists():
        raise FileNotFoundError(f"{run_dir}/best.json does not exist: run `steersearch run` first")
    heldout = build_heldout(cfg, model=model, scorers=scorers)
    data = heldout.data
    vectors = vector_cache(cfg, data, run_dir)  # fitted vectors load from the run folder
    study = load_run_study(cfg, run_dir)  # any storage, or a one-line error
    prompting = prompting_method(cfg, data.gold.name)
    selection = current_selection(cfg, run_dir, study, heldout, vectors)
    rows = [c.steering_of(heldout.model, vectors) for c in selection.contenders]
    distilled = DistillReport.load(run_dir)
    if distilled is not None:  # `steersearch analyze` distilled vectors in this folder: their short pairs too
        rows += distilled_methods(heldout.model, distilled)
    methods = [Method("unsteered", []), prompting, *rows]
    measured: dict[str, Measured] = {}
    for method in methods:
        logger.info("comparing %s", method.name)
        measured[method.name] = heldout.measure(method)
    results = {name: heldout.evaluation(m) for name, m in measured.items()}
    paired: dict[str, dict[str, Paired]] = {}
    if len(study.directions) == 1:  # a scalar to pair on
        against = [r for r in (selection.reference, prompting.name) if r is not None]
        for name in measured:
            paired[name] = {r: heldout.paired(measured[name], measured[r]) for r in against if r != name}
    contenders = tuple(dataclasses.replace(c, test=results[c.name]) for c in selection.contenders)
    dataclasses.replace(selection, contenders=contenders).save(run_dir)
    comparison = Comparison(
        split="heldout",
        prompts=tuple(data.prompts.heldout),
        samples_per_prompt=cfg.compare.n,
        seed=cfg.compare.seed,
        bootstrap_resamples=cfg.compare.bootstrap,
        methods=results,
        examples={name: tuple(m.texts[: cfg.compare.n]) for name, m in measured.items()},
        winner=selection.winner,
        reference=selection.reference,
        prompting=prompting.name,
        paired=paired,
        context_tokens={m.name: context_tokens(heldout.model, data.prompts.heldout, m) for m in methods},
    )
    comparison.save(run_dir)
    return comparison
