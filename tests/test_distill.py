from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from objectives.testing import FakeBertScorer
from search.analysis.analyze import run_analysis
from search.analysis.distill import DistillReport, best_single_pair, distill_vector, single_tokens
from search.analysis.length import LengthReport, truncations
from search.cli import main
from search.config import ConfigError, load_config
from search.config.features import DistillSpec, TargetSpec
from search.mutate import MutationConfig
from search.outputs import check_run_folder, config_yaml
from search.session import Scorers
from steering import SteeringVector
from steering.model import SteerableModel
from steering.tokens import compress_positions, cosine_score, positional_cosine_score

ROOT = Path(__file__).parents[1]


def test_a_planted_short_pair_is_recovered_from_its_own_vector(tiny: SteerableModel) -> None:
    tokens = single_tokens(tiny, readable=True)
    word = tiny.tokenizer.decode([tokens[len(tokens) // 2]])
    planted = SteeringVector.from_pair(tiny, word, "", 1)
    spec = DistillSpec(targets=(TargetSpec(1, pair=(word, "")),), max_tokens=1)
    (row,) = distill_vector(tiny, planted, 3.0, spec, pair=(word, ""))
    assert row.pair == (word, "") and row.cosine > 0.9999
    assert row.projection_coeff == pytest.approx(3.0, rel=1e-3)  # the projection coefficient recovers the scale


def test_single_pair_search_with_two_sided_target(tiny: SteerableModel) -> None:
    tokens = single_tokens(tiny, readable=True)
    a, b = (tiny.tokenizer.decode([t]) for t in tokens[3:5])
    goal = SteeringVector.from_pair(tiny, a, b, 0).summed()
    best = best_single_pair(tiny, 0, goal, tokens, shortlist=len(tokens))
    assert best.decode(tiny.tokenizer) == (a, b)


def test_longer_lengths_search_and_report_text_cosines(tiny: SteerableModel) -> None:
    pair = ("The bride and the groom", "The team won")
    target = SteeringVector.from_pair(tiny, *pair, 1)
    spec = DistillSpec(
        targets=(TargetSpec(1, pair=pair),), max_tokens=3, gcg=MutationConfig(steps=3, top_k=8, candidates=16)
    )
    rows = distill_vector(tiny, target, 1.0, spec, pair=pair)
    assert [r.tokens for r in rows] == [1, 2, 3]
    for r in rows:
        text_vec = SteeringVector.from_pair(tiny, *r.pair, 1)
        assert max(len(tiny.encode(p)) - 1 for p in r.pair) <= r.tokens
        cosine = torch.nn.functional.cosine_similarity(text_vec.summed(), target.summed(), dim=0)
        assert text_vec.n_pos >= 2 and r.cosine == pytest.approx(float(cosine), abs=1e-5)  # from the text


def test_truncations_drop_identical_sides() -> None:
    got = truncations("I talk about weddings", "I do not talk about weddings")
    assert got[0] == ("I talk", "I do") and ("I", "I") not in got and len(got) == 5


ANALYSIS = f"""
name: a
data:
  gold: {ROOT}/configs/gold/weddings.yaml
  prompts: {ROOT}/configs/gold/prompts.yaml
  neutral: {ROOT}/configs/gold/neutral.yaml
  off_target: {ROOT}/configs/gold/off_target.yaml
generation: {{max_new_tokens: 4, n: 1}}
objective: {{terms: [{{metric: bertscore_f1}}]}}
space: {{learned: {{batch_size: 4}}}}
compare: {{n: 1, bootstrap: 20}}
distill:
  targets:
    - {{pair: ["The bride and the groom", "The team"], layer: 1, coeff: 4}}
    - {{learned: {{lr: 0.1, steps: 3, norm_bound: 5}}, layer: 1}}
    - {{pair: ["The bride and the groom", "The team"], layer: 1, coeff: 4, match: per_position}}
  max_tokens: 2
  coeff_scales: [1, 2]
  coeffs: [3]
  gcg: {{steps: 2, top_k: 4, candidates: 4}}
length:
  layer: 1
  coeff: 4
  coeffs: [2, 8]
  truncate: [["The bride and the groom", "The team won the match"]]
  pairs: [["wedding", ""]]
"""


def test_analyze_writes_tables_plot_and_report(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg_path = tmp_path / "a.yaml"
    cfg_path.write_text(ANALYSIS)
    cfg, out = load_config(cfg_path), tmp_path / "run"
    res = run_analysis(cfg, out, model=tiny, scorers=Scorers(bert=FakeBertScorer()))
    assert res.distill is not None and res.length is not None
    targets = res.distill.targets
    assert len(targets) == 3 and targets[1].target.startswith("learned L1")
    assert [t.match for t in targets] == ["summed", "summed", "per_position"]
    assert targets[2].target.endswith("per-position match") and targets[2].target_heldout == targets[0].target_heldout
    assert [r.short.tokens for r in targets[0].rows] == [1, 2]
    assert list((out / "vectors" / "fitted").glob("*.safetensors"))  # the learned target was saved
    for r in targets[0].rows:  # the projection's times a scale, or an absolute coefficient: the best on search
        by_scale = r.search_objective_by_scale
        tried = {k * r.short.projection_coeff: v for k, v in zip((1.0, 2.0), by_scale.values(), strict=True)}
        assert list(r.search_objective_by_scale) == ["1.0", "2.0"] and list(r.search_objective_by_coeff) == ["3.0"]
        tried[3.0] = r.search_objective_by_coeff["3.0"]
        assert r.coeff == pytest.approx(max(tried, key=tried.__getitem__))
        assert r.best_search_objective == max(tried.values())
        kept = (r.heldout.value - res.distill.unsteered.value) / (
            targets[0].target_heldout.value - res.distill.unsteered.value
        )
        assert r.effect_kept == pytest.approx(kept)
    rows = res.length.rows
    for r in rows:
        by_coeff = {float(k): v for k, v in r.search_objective_by_coeff.items()}
        assert r.best_coeff == max(by_coeff, key=by_coeff.__getitem__)
    assert len(rows) == 4 + 1 and all(r.best_coeff in (2.0, 4.0, 8.0) for r in rows)
    # The typed results round-trip through the run folder.
    assert DistillReport.load(out) == res.distill and LengthReport.load(out) == res.length
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Distillation into short pairs" in md and "## Length vs strength" in md
    assert (out / "figures" / "length.png").stat().st_size > 1000
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_bad_analysis_configs(tmp_path: Path) -> None:
    p = tmp_path / "b.yaml"
    p.write_text("distill: {targets: [{layer: 1}]}\n")
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(p)
    p.write_text("length: {layer: 1, coeff: 2}\n")
    with pytest.raises(ConfigError, match="truncate"):
        load_config(p)
    p.write_text("name: x\n")
    with pytest.raises(ConfigError, match="distill or a length"):
        run_analysis(load_config(p), tmp_path / "o")


def test_analyze_refuses_a_folder_another_config_made(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg_path = tmp_path / "a.yaml"
    cfg_path.write_text(ANALYSIS)
    cfg, out = load_config(cfg_path), tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(config_yaml(dataclasses.replace(cfg, name="someone-else")))
    before = (out / "config.yaml").read_text()
    with pytest.raises(ValueError, match="made by a different config"):
        run_analysis(cfg, out, model=tiny, scorers=Scorers(bert=FakeBertScorer()))
    assert (out / "config.yaml").read_text() == before and sorted(p.name for p in out.iterdir()) == ["config.yaml"]
    # A search's folder may gain an analysis section: only distill/length differ, so it is accepted.
    (out / "config.yaml").write_text(config_yaml(dataclasses.replace(cfg, distill=None, length=None)))
    check_run_folder(out, cfg, None, check_storage=False)


def test_compress_positions_interpolates_between_summed_and_exact() -> None:
    t = torch.randn(6, 4)
    t[0] = 0.0  # BOS: shared by both sides
    assert torch.allclose(compress_positions(t, 1)[0], t.sum(dim=0))
    assert torch.equal(compress_positions(t, 5), t[1:])
    assert torch.allclose(compress_positions(t, 2), torch.stack([t[1:4].sum(0), t[4:].sum(0)]))
    assert torch.equal(compress_positions(t, 7)[5:], torch.zeros(2, 4))  # longer than the target: zero rows


def test_positional_score_sees_placement_the_summed_score_throws_away() -> None:
    x, y = torch.randn(4), torch.randn(4)
    target = torch.stack([torch.zeros(4), x, y])  # [BOS, x, y]
    swapped = torch.stack([torch.zeros(4), y, x])
    cands = torch.stack([target, swapped])  # [2, 3, 4]
    assert torch.allclose(cosine_score(target)(cands), torch.ones(2))  # summing cannot tell them apart
    per = positional_cosine_score(target)(cands)
    assert per[0] == pytest.approx(1.0) and per[1] < 0.999


def test_per_position_match_recovers_a_planted_two_token_pair_in_order(tiny: SteerableModel) -> None:
    tokens = single_tokens(tiny, readable=True)
    words = [tiny.tokenizer.decode([t]) for t in tokens if tiny.tokenizer.decode([t]).startswith(" ")][5:7]
    forward, backward = "".join(words), "".join(reversed(words))
    planted = SteeringVector.from_pair(tiny, forward, "", 0)
    reversed_vec = SteeringVector.from_pair(tiny, backward, "", 0)
    spec = DistillSpec(
        targets=(TargetSpec(0, pair=(forward, ""), match="per_position"),),
        max_tokens=2,
        gcg=MutationConfig(steps=4, top_k=16, candidates=32),
    )
    rows = distill_vector(tiny, planted, 2.0, spec, pair=(forward, ""), match="per_position")
    # Side b may come back as filler spaces: the same tokens the empty side is padded with.
    assert rows[1].pair[0] == forward and rows[1].pair[1].strip() == "" and rows[1].cosine > 0.9999
    assert rows[1].projection_coeff == pytest.approx(2.0, rel=1e-3)
    # At layer 0 the reversed pair has the same summed vector, so only the per-position match rejects it.
    score = positional_cosine_score(planted.activations)
    assert float(score(reversed_vec.activations[None])[0]) < 0.99
    summed = torch.nn.functional.cosine_similarity(planted.summed(), reversed_vec.summed(), dim=0)
    assert float(summed) > 0.9999


def test_match_keys_are_checked_and_default_to_summed() -> None:
    pair = ("a b", "c")
    assert TargetSpec(0, pair=pair).matching("summed") == "summed"
    assert TargetSpec(0, pair=pair).matching("per_position") == "per_position"
    assert TargetSpec(0, pair=pair, positions="all").matching("per_position") == "summed"  # summed vector added
    assert DistillSpec(targets=(TargetSpec(0, pair=pair),)).match == "summed"
    with pytest.raises(ValueError, match="match must be one of"):
        DistillSpec(targets=(TargetSpec(0, pair=pair),), match="flat")
    with pytest.raises(ValueError, match="front positions"):
        TargetSpec(0, pair=pair, positions="all", match="per_position")
