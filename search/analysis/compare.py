"""``steersearch compare``: the fair comparison, on data the search never saw.

Held-out prompts, held-out seeds (``compare.seed``, distinct from the search's) and held-out gold
passages, neutral text and off-target prompts. Methods: unsteered, each hand-written baseline, a
prompting baseline (an instruction prefix asking for the target behaviour), and the best found (from
``best.json``; selection happened on the search split only). Every metric gets a bootstrap 95% CI.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search.analysis.evaluation import Evaluation, Method, build_heldout
from search.config import ExperimentConfig, from_dict
from search.outputs import write_text
from search.session import Scorers, load_run_study, vector_cache
from search.space import AdditionChoice, Candidate, Pair
from search.vectors import VectorCache
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

    FILE = "comparison.json"

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / self.FILE, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Comparison | None:
        path = run_dir / cls.FILE
        return from_dict(cls, json.loads(path.read_text()), cls.FILE) if path.exists() else None


def methods_for(
    cfg: ExperimentConfig, run_dir: Path, model: SteerableModel, vectors: VectorCache, gold_name: str
) -> list[Method]:
    methods = [Method("unsteered", [])]
    baselines = set()
    for b in cfg.baselines:
        cand = Candidate((AdditionChoice(Pair(b.pair[0], b.pair[1]), b.layer, b.coeff, b.frac, b.mask, b.positions),))
        baselines.add(cand)
        name = f"hand-written: {b.pair[0]!r} / {b.pair[1]!r} (layer {b.layer}, coeff {b.coeff:g})"
        methods.append(Method(name, cand.steering(model, vectors)))
    prefix = cfg.compare.prefix if cfg.compare.prefix is not None else f"Let me tell you about {gold_name}. "
    methods.append(Method(f"prompting: {prefix.strip()!r}", [], prefix))
    best = json.loads((run_dir / "best.json").read_text())
    entries = best.get("pareto") or ([best] if best.get("candidate") else [])
    chosen = [(f"best (trial {e['number']})", e["number"], e["candidate"]) for e in entries[: cfg.compare.max_best]]
    if cfg.compare.per_source and not best.get("pareto"):
        shown = {number for _, number, _ in chosen}
        per_source = best_per_source(load_run_study(cfg, run_dir))  # any storage, or a one-line error
        for source, (number, record) in per_source.items():
            if number not in shown and Candidate.from_record(record) not in baselines:  # not a row already
                chosen.append((f"best {source} (trial {number})", number, record))
    for label, _, record in chosen:
        cand = Candidate.from_record(record)
        methods.append(Method(f"{label}: {cand.describe()}", cand.steering(model, vectors)))
    return methods


def _source_label(r: dict[str, Any]) -> str:
    source = str(r.get("source", "hand-written"))
    if source == "learned" and r.get("fit"):
        return f"learned ({'fine-tuned pair' if r['fit']['init'] == 'pair' else 'from zeros'})"
    return source


def best_per_source(study: optuna.Study) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    """The best complete trial (number, candidate record) per candidate source: ``hand-written``,
    ``template``, ``adversarial``, ``learned (from zeros)``, ``learned (fine-tuned pair)``; several
    additions count as ``mixed`` unless they agree.
    Selection uses search-split values only. Single-objective studies."""
    best: dict[str, tuple[float, int, list[dict[str, Any]]]] = {}
    if len(study.directions) > 1:
        return {}
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = t.user_attrs.get("candidate")
        if not record or t.value is None or not math.isfinite(t.value):
            continue
        sources = {_source_label(r) for r in record}
        source = sources.pop() if len(sources) == 1 else "mixed"
        if source not in best or sign * t.value > sign * best[source][0]:
            best[source] = (t.value, t.number, record)
    return {s: (n, r) for s, (_, n, r) in sorted(best.items())}


def run_compare(
    cfg: ExperimentConfig, run_dir: Path, *, model: SteerableModel | None = None, scorers: Scorers | None = None
) -> Comparison:
    """Evaluate every method on the held-out split and write ``run_dir/comparison.json``."""
    if not (run_dir / "best.json").exists():
        raise FileNotFoundError(f"{run_dir}/best.json does not exist: run `steersearch run` first")
    heldout = build_heldout(cfg, model=model, scorers=scorers)
    data = heldout.data
    vectors = vector_cache(cfg, data, run_dir)  # fitted vectors load from the run folder
    results: dict[str, Evaluation] = {}
    examples: dict[str, tuple[str, ...]] = {}
    for method in methods_for(cfg, run_dir, heldout.model, vectors, data.gold.name):
        logger.info("comparing %s", method.name)
        results[method.name], texts = heldout(method)
        examples[method.name] = tuple(texts[: cfg.compare.n])
    comparison = Comparison(
        split="heldout",
        prompts=tuple(data.prompts.heldout),
        samples_per_prompt=cfg.compare.n,
        seed=cfg.compare.seed,
        bootstrap_resamples=cfg.compare.bootstrap,
        methods=results,
        examples=examples,
    )
    comparison.save(run_dir)
    return comparison
