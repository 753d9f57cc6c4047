"""What each compared method costs in context (prompting pays its prefix on every call, a vector nothing), the
distilled short pairs as comparison rows, and the shipped constitution experiment's data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from objectives.gold import load_gold_set, load_split
from objectives.testing import FakeBertScorer
from search.analysis.compare import Comparison, context_tokens, distilled_methods, run_compare
from search.analysis.distill import DistilledPair, DistilledTarget, DistillReport, ShortPair, target_choice
from search.analysis.evaluation import Evaluation, Interval, Method
from search.config import ConfigError, load_config
from search.config.features import TargetSpec
from search.report.tables import abbreviate, comparison_table, distill_table, fmt_tokens
from search.run import run_search
from search.session import Scorers, load_data
from steering import PositionMode
from steering.model import SteerableModel
from tests.helpers import ROOT, SMALL_CONFIG

PROMPTS = ["I went up to my friend and said", "Here is how to"]


def test_a_prefix_costs_its_tokens_on_every_prompt_and_a_vector_none(tiny: SteerableModel) -> None:
    prefix = "Be honest and kind. "
    extra = [len(tiny.encode_prompt(prefix + p)) - len(tiny.encode_prompt(p)) for p in PROMPTS]
    assert min(extra) > 0
    assert context_tokens(tiny, PROMPTS, Method("prompting", [], prefix)) == pytest.approx(sum(extra) / 2)
    assert context_tokens(tiny, PROMPTS, Method("unsteered", [])) == 0.0


def _evaluation(value: float) -> Evaluation:
    return Evaluation({"steer_score": Interval(value, value - 0.1, value + 0.1)}, {}, value)


def _report(rows: list[tuple[tuple[str, str], dict[str, float], float]], positions: str = "from:1") -> DistillReport:
    """A distill.json with one pair target whose rows are ``(pair, search objective by scale, coeff)``."""
    distilled = tuple(
        DistilledPair(ShortPair(len(pair[0].split()), pair, 0.5, 1.0), coeff, by_scale, _evaluation(0.3), 0.5)
        for pair, by_scale, coeff in rows
    )
    target = DistilledTarget("'a long pair' / '' L1 c4", 3, 1, positions, 10.0, _evaluation(0.4), distilled)
    return DistillReport(_evaluation(0.1), (target,))


def test_the_distilled_row_is_the_short_pair_best_on_the_search_split(tiny: SteerableModel) -> None:
    report = _report(
        [
            ((" wedding", ""), {"1.0": 0.2, "2.0": 0.3}, 2.0),
            ((" wedding bride", " the"), {"1.0": 0.5, "2.0": 0.1}, 3.0),  # best on search: its heldout is ignored
        ]
    )
    (method,) = distilled_methods(tiny, report)
    assert method.name.startswith("distilled from target 1: ' wedding bride' / ' the' L1 c3")
    (addition,) = method.steering
    assert addition.coeff == 3.0 and addition.layer == 1 and addition.positions.mode is PositionMode.FROM
    assert addition.vector.metadata["prompt_a"] == " wedding bride" and not method.prefix
    empty = DistillReport(report.unsteered, (DistilledTarget("t", None, 1, "front", 1.0, _evaluation(0.2), ()),))
    assert distilled_methods(tiny, empty) == []


def test_compare_rows_say_their_context_cost_and_include_distilled_pairs(tiny: SteerableModel, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(
        SMALL_CONFIG + "compare: {n: 2, bootstrap: 20, prefix: 'Weddings are all I talk about. '}\n"
        "select: {n: 2, top_k: 1}\n"
    )
    cfg = load_config(tmp_path / "exp.yaml")
    scorers, out = Scorers(bert=FakeBertScorer()), tmp_path / "r"
    run_search(cfg, out=out, model=tiny, scorers=scorers, progress=False)
    _report([((" wedding", ""), {"1.0": 0.2}, 2.0)]).save(out)  # as `steersearch analyze` leaves it
    comparison = run_compare(cfg, out, model=tiny, scorers=scorers)
    names = list(comparison.methods)
    distilled = [n for n in names if n.startswith("distilled from target 1")]
    assert len(distilled) == 1 and comparison.prompting is not None
    assert comparison.context_tokens.keys() == comparison.methods.keys()
    heldout = list(load_data(cfg).prompts.heldout)
    prompting = Method("p", [], "Weddings are all I talk about. ")
    assert comparison.context_tokens[comparison.prompting] == context_tokens(tiny, heldout, prompting)
    assert comparison.context_tokens[comparison.prompting] > 0
    assert all(comparison.context_tokens[n] == 0 for n in names if n != comparison.prompting)
    assert set(comparison.paired[distilled[0]]) == {comparison.prompting, comparison.reference}
    assert Comparison.load(out) == comparison  # the column round-trips through comparison.json
    table = comparison_table(comparison)
    assert table.splitlines()[0].endswith("| context tokens |")
    prompting_row = next(r for r in table.splitlines() if r.startswith("| prompting"))
    assert prompting_row.endswith(f"| {fmt_tokens(comparison.context_tokens[comparison.prompting])} |")


def test_a_comparison_without_costs_keeps_its_old_table() -> None:
    """comparison.json written before the column existed loads, and its table has no cost column."""
    old = Comparison("heldout", ("p",), 1, 0, 10, {"unsteered": _evaluation(0.1)}, {"unsteered": ("x",)})
    assert "context tokens" not in comparison_table(old)
    assert fmt_tokens(76.0) == "76" and fmt_tokens(7.5) == "7.5" and fmt_tokens(None) == "–"


def test_long_quoted_strings_in_row_names_are_abbreviated() -> None:
    long = "I tell the truth, even when it is awkward, and I say plainly when I do not know."
    name = f"tuned hand-written: {long!r} / '' L18 c0.05"
    shown = abbreviate(name)
    assert shown.startswith("tuned hand-written: 'I tell the truth, even when it is awkward") and "…'" in shown
    assert shown.endswith(" / '' L18 c0.05") and len(shown) < len(name)
    usual = "tuned hand-written: 'I talk about weddings constantly' / 'I do not talk about weddings constantly' L0"
    assert abbreviate(usual) == usual
    comparison = Comparison("heldout", ("p",), 1, 0, 10, {name: _evaluation(0.2)}, {name: ("x",)}, winner=name)
    assert f"**winner**: {shown}" in comparison_table(comparison)


def test_a_pair_target_is_distilled_at_its_positions() -> None:
    target = TargetSpec(layer=18, pair=("a long constitution", "its negation"), coeff=0.05, positions="from:1")
    choice = target_choice(target)
    assert choice.positions == "from:1" and choice.coeff == 0.05
    assert target_choice(TargetSpec(layer=1, pair=("a", "b"))).positions == "front"
    with pytest.raises(ValueError, match="positions must be"):
        TargetSpec(layer=1, pair=("a", "b"), positions="middle")


def test_a_learned_target_keeps_its_fit_positions(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("distill: {targets: [{learned: {lr: 0.1, steps: 3, norm_bound: 5}, layer: 1, positions: 'from:1'}]}\n")
    with pytest.raises(ConfigError, match="fit's positions"):
        load_config(p)


def test_the_constitution_experiment_prompts_with_the_constitution_it_steers_with() -> None:
    cfg = load_config(ROOT / "configs" / "smollm2-constitution.yaml")
    assert cfg.pairs is not None and cfg.compare.prefix is not None and cfg.distill is not None
    (constitution, empty), (same, negation) = cfg.pairs.hand_written
    assert empty == "" and same == constitution and negation and negation != constitution
    assert cfg.compare.prefix == constitution + " "  # the whole constitution, then the prompt
    assert 300 < len(constitution) < 600  # a paragraph: 76 SmolLM2 tokens
    assert {b.pair for b in cfg.baselines} == {(constitution, ""), (constitution, negation)}
    assert any(t.pair == (constitution, negation) for t in cfg.distill.targets)
    assert any(t.learned is not None for t in cfg.distill.targets) and "learned" in cfg.space.kinds
    gold = load_gold_set(cfg.data.gold)
    prompts = load_split(cfg.data.prompts)
    for split in ("search", "validation", "heldout"):
        assert len(gold.passages.part(split)) == 12
    passages = [p for s in ("search", "validation", "heldout") for p in gold.passages.part(s)]
    assert len(set(passages)) == len(passages)  # distinct across splits
    assert not set(passages) & {*prompts.search, *prompts.validation, *prompts.heldout}


def test_the_distillation_table_abbreviates_a_paragraph_long_target() -> None:
    long = "I tell the truth, even when it is awkward, and I say plainly when I do not know."
    report = _report([((" wedding", ""), {"1.0": 0.2}, 2.0)])
    target = dataclasses.replace(report.targets[0], target=f"{long!r} / '' L18 c0.05")
    table = distill_table(dataclasses.replace(report, targets=(target,)))
    assert long not in table and "'I tell the truth, even when it is awkward…' / '' L18 c0.05" in table
