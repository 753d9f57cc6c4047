from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from objectives.testing import FakeBertScorer
from search.cli import main
from search.config import ConfigError, load_config
from search.run import run_search
from search.session import Scorers, load_run_study
from search.study import storage_for
from steering import SteeringVector
from steering.model import SteerableModel
from tests.helpers import SMALL_CONFIG

ROOT = Path(__file__).parents[1]

CONFIG = SMALL_CONFIG


def _cfg(tmp_path: Path, text: str = CONFIG):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return load_config(p)


def test_run_writes_the_contract_and_resumes(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg, out = _cfg(tmp_path), tmp_path / "run"
    scorers = Scorers(bert=FakeBertScorer())
    study = run_search(cfg, out=out, model=tiny, scorers=scorers, progress=False)
    assert len(study.trials) == 3
    first = study.trials[0]
    assert first.user_attrs["baseline"] and first.params["layer"] == 1 and first.params["coeff"] == 4
    for name in ("config.yaml", "env.json", "trials.csv", "best.json", "study.db"):
        assert (out / name).exists(), name
    best = json.loads((out / "best.json").read_text())
    assert best["value"] is not None and "pair" in best["params"]
    vec = SteeringVector.load(next((out / "vectors").glob("*.safetensors")))
    assert vec.layer == best["candidate"][0]["layer"]
    assert len(list((out / "completions").glob("*.jsonl"))) >= 1

    again = run_search(cfg, out=out, model=tiny, scorers=scorers, n_trials=5, progress=False)
    assert len(again.trials) == 5 and sum(bool(t.user_attrs.get("baseline")) for t in again.trials) == 1
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 5 and {"metric_bertscore_f1", "metric_ppl_ratio", "param_coeff", "value"} <= set(rows[0])
    # The config as run round-trips through the loader.
    assert load_config(out / "config.yaml") == cfg
    assert not (out / "report.md").exists()  # the runner produces; rendering is the report command's
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Optimisation history" in md and "## Best vs hand-written" in md and "hand-written" in md
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "<table>" in page
    # `steersearch report DIR` rebuilds both from storage and files.
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").read_text() == md


def test_journal_storage(tiny: SteerableModel, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    run_search(
        cfg,
        out=tmp_path / "r",
        model=tiny,
        scorers=Scorers(bert=FakeBertScorer()),
        n_trials=1,
        storage=f"journal:{tmp_path / 'journal.log'}",
        progress=False,
    )
    study = optuna.load_study(study_name="t", storage=storage_for(f"journal:{tmp_path / 'journal.log'}", tmp_path))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]  # the trial is in the journal
    assert not (tmp_path / "r" / "study.db").exists()  # and nowhere else
    # Every reader finds it through the run folder, without being told the storage again.
    assert load_run_study(load_config(tmp_path / "r" / "config.yaml"), tmp_path / "r").trials[0].number == 0


def test_run_config_errors(tiny: SteerableModel, tmp_path: Path) -> None:
    no_pairs = CONFIG.split("pairs:")[0] + "study: {n_trials: 1}\n"
    with pytest.raises(ConfigError, match="pairs: required"):
        run_search(_cfg(tmp_path, no_pairs), out=tmp_path / "x", model=tiny, progress=False)
    bad_layer = CONFIG.replace("layer: {low: 0, high: 1}", "layer: {low: 0, high: 9}")
    with pytest.raises(ConfigError, match="space.layer.high 9 is out of range"):
        run_search(_cfg(tmp_path, bad_layer), out=tmp_path / "x", model=tiny, progress=False)
    bad_gold = CONFIG.replace("weddings.yaml", "nope.yaml")
    with pytest.raises(ConfigError, match="data.gold: file .* does not exist"):
        run_search(_cfg(tmp_path, bad_gold), out=tmp_path / "x", model=tiny, progress=False)


def test_grid_sampler_needs_value_lists(tiny: SteerableModel, tmp_path: Path) -> None:
    grid = CONFIG.replace("seed: 0}", "seed: 0, sampler: grid}")
    with pytest.raises(ValueError, match="space.coeff.values"):
        run_search(
            _cfg(tmp_path, grid), out=tmp_path / "g", model=tiny, scorers=Scorers(bert=FakeBertScorer()), progress=False
        )
    ok = grid.replace("coeff: {low: 0.5, high: 8, log: true}", "coeff: {values: [1, 4]}")
    study = run_search(
        _cfg(tmp_path, ok),
        out=tmp_path / "g2",
        model=tiny,
        scorers=Scorers(bert=FakeBertScorer()),
        n_trials=4,
        progress=False,
    )
    coeffs = {t.params["coeff"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert coeffs and coeffs <= {1.0, 4.0}


def test_frac_coeff_heatmap(tiny: SteerableModel, tmp_path: Path) -> None:
    sweep = (
        CONFIG.replace("seed: 0}", "seed: 0, sampler: grid, pruner: none}")
        .replace("coeff: {low: 0.5, high: 8, log: true}", "coeff: {values: [1, 4]}\n  frac: {values: [0.5, 1.0]}")
        .replace(
            'hand_written: [["The bride and the groom", ""]]',
            'hand_written: [["I talk about weddings constantly", "I do not talk about weddings constantly"]]',
        )
        .replace("layer: {low: 0, high: 1}", "layer: {low: 1, high: 1}")
        .replace('  templates: [["{x}", ""]]\n  words: [wedding, calm]\n', "")
    )
    cfg = _cfg(tmp_path, sweep)
    study = run_search(
        cfg, out=tmp_path / "s", model=tiny, scorers=Scorers(bert=FakeBertScorer()), n_trials=5, progress=False
    )
    assert {(t.params["frac"], t.params["coeff"]) for t in study.trials[1:]} == {(0.5, 1), (0.5, 4), (1.0, 1), (1.0, 4)}
    assert main(["report", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "figures" / "frac_coeff.png").exists()
    assert "## frac × coeff" in (tmp_path / "s" / "report.md").read_text()


def test_compare_on_heldout_with_cis(tiny: SteerableModel, tmp_path: Path) -> None:
    from search.analysis.compare import Comparison, run_compare
    from search.report.tables import comparison_table

    cfg, out = _cfg(tmp_path, CONFIG + "compare: {n: 2, bootstrap: 50, prefix: 'Weddings! '}\n"), tmp_path / "run"
    scorers = Scorers(bert=FakeBertScorer())
    run_search(cfg, out=out, model=tiny, scorers=scorers, n_trials=2, progress=False)
    report = run_compare(cfg, out, model=tiny, scorers=scorers)
    assert Comparison.load(out) == report  # comparison.json round-trips to the typed result
    assert report.split == "heldout"
    names = list(report.methods)
    assert names[0] == "unsteered" and names[1].startswith("prompting") and names[2].startswith("tuned hand-written")
    assert any(n.startswith("search #1 (trial 1)") for n in names)
    assert not any("(trial 0)" in n for n in names[3:])  # trial 0 is the baseline, already a row of its own
    assert report.winner in names and report.reference == names[2] and report.prompting == names[1]
    for name in names:  # every row paired with the tuned pair and with prompting, but not with itself
        assert set(report.paired[name]) == {names[1], names[2]} - {name}
        for p in report.paired[name].values():
            assert p.diff.lo <= p.diff.mean <= p.diff.hi and p.verdict in ("beats", "ties", "loses")
    for r in report.methods.values():
        assert 0 < r.corpus["distinct_2"] <= 1
        for m in ("bertscore_f1", "keyword_rate", "ppl_ratio", "kl", "rep_rate"):
            v = r.metrics[m]
            assert v.lo <= v.mean <= v.hi, (m, v)
    unsteered = report.methods["unsteered"].metrics
    assert unsteered["ppl_ratio"].mean == pytest.approx(1.0) and unsteered["kl"].mean == pytest.approx(0.0, abs=1e-6)
    assert "| unsteered |" in comparison_table(report, ["bertscore_f1", "kl"])


def test_bootstrap_ci_brackets_the_mean() -> None:
    from objectives.items import list_mean
    from search.analysis.evaluation import bootstrap_ci

    ci = bootstrap_ci(list_mean([float(v) for v in range(100)]), resamples=500, seed=0)
    assert ci.mean == 49.5 and 40 < ci.lo < ci.mean < ci.hi < 60


def test_optuna_dashboard_opens_the_run_storage(tiny: SteerableModel, tmp_path: Path) -> None:
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard

    out = tmp_path / "d"
    run_search(_cfg(tmp_path), out=out, model=tiny, scorers=Scorers(bert=FakeBertScorer()), n_trials=1, progress=False)
    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")
    env: dict = {}
    setup_testing_defaults(env)
    env["PATH_INFO"] = "/api/studies"
    status: list[str] = []
    body = b"".join(app(env, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"]
    assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["t"]


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "gp", "random", "nsga2"])
def test_every_sampler_runs(tiny: SteerableModel, tmp_path: Path, sampler: str) -> None:
    text = CONFIG.replace("seed: 0}", f"seed: 0, sampler: {sampler}}}")
    if sampler == "nsga2":
        text = text.replace(
            "terms: [{metric: bertscore_f1}]", "kind: multi\n  terms: [{metric: bertscore_f1}, {metric: kl}]"
        )
    study = run_search(
        _cfg(tmp_path, text),
        out=tmp_path / sampler,
        model=tiny,
        scorers=Scorers(bert=FakeBertScorer()),
        n_trials=4,
        progress=False,
    )
    states = [t.state for t in study.trials]
    assert len(states) == 4 and optuna.trial.TrialState.COMPLETE in states
    expected = {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler", "random": "RandomSampler"}
    assert type(study.sampler).__name__ == expected.get(sampler, "NSGAIISampler")  # the configured one ran
    assert all("fail_reason" not in t.user_attrs for t in study.trials)
    if sampler == "nsga2":
        assert "pareto" in json.loads((tmp_path / sampler / "best.json").read_text())


LEARNED_AND_ADVERSARIAL = CONFIG.replace(
    "  coeff: {low: 0.5, high: 8, log: true}\n",
    "  coeff: {low: 0.5, high: 8, log: true}\n"
    "  kinds: [pair, learned]\n"
    "  learned: {lr: {low: 0.05, high: 0.1}, steps: {low: 2, high: 3}, norm_bound: {low: 5, high: 10}}\n",
).replace("study: {n_trials: 3, seed: 0}", "study: {n_trials: 8, seed: 0, sampler: random}") + (
    "adversarial: {gcg: {steps: 2, top_k: 8, candidates: 4}, rows: 4}\ncompare: {n: 2, bootstrap: 20}\n"
)


def test_learned_and_adversarial_candidates_enter_the_study(tiny: SteerableModel, tmp_path: Path) -> None:
    from search.analysis.compare import run_compare

    cfg, out = _cfg(tmp_path, LEARNED_AND_ADVERSARIAL), tmp_path / "run"
    scorers = Scorers(bert=FakeBertScorer())
    study = run_search(cfg, out=out, model=tiny, scorers=scorers, progress=False)
    adv = json.loads((out / "adversarial.json").read_text())["runs"]
    assert len(adv) == 1 and adv[0]["proxy_best"] >= adv[0]["proxy_start"]
    records = [t.user_attrs["candidate"][0] for t in study.trials if "candidate" in t.user_attrs]
    sources = {r["source"] for r in records}
    assert {"hand-written", "learned"} <= sources
    if adv[0]["best"] != adv[0]["start"]:  # the winner was enqueued and judged by the real objective
        assert "adversarial" in sources and study.trials[1].user_attrs.get("adversarial")
    assert main(["report", str(out)]) == 0 and "## Adversarial pairs" in (out / "report.md").read_text()
    fitted = list((out / "vectors" / "fitted").glob("*.safetensors"))
    assert len(fitted) == sum(r["kind"] == "learned" for r in records) > 0
    assert load_config(out / "config.yaml") == cfg
    names = list(run_compare(cfg, out, model=tiny, scorers=scorers).methods)
    assert any(n.startswith("best learned (") or (n.startswith("search #") and "learned L" in n) for n in names)
    # Resuming reuses the adversarial runs and the fitted vectors (nothing is fitted or mutated again).
    mtime = (out / "adversarial.json").stat().st_mtime
    again = run_search(cfg, out=out, model=tiny, scorers=scorers, n_trials=9, progress=False)
    assert len(again.trials) == 9 and (out / "adversarial.json").stat().st_mtime == mtime


def test_the_comparison_measures_what_the_search_optimised(tiny: SteerableModel, tmp_path: Path) -> None:
    """One metric pipeline: re-measuring a finished trial's candidate the comparison's way, on the search
    split with the search's seed and sample count, gives the trial's own recorded metrics."""
    from search.analysis.evaluation import Method, SplitEvaluator
    from search.session import load_data
    from search.space import Candidate
    from search.vectors import VectorCache

    cfg = _cfg(tmp_path, CONFIG + "compare: {n: 2, bootstrap: 20}\n")  # n = the last rung (2 samples)
    scorers = Scorers(bert=FakeBertScorer())
    study = run_search(cfg, out=tmp_path / "r", model=tiny, scorers=scorers, n_trials=2, progress=False)
    trial = next(t for t in study.trials if t.user_attrs.get("samples_per_prompt") == 2)
    cand = Candidate.from_record(trial.user_attrs["candidate"])
    evaluator = SplitEvaluator(cfg, load_data(cfg), tiny, scorers, split="search")
    result, _ = evaluator(Method("trial", cand.steering(tiny, VectorCache())))
    measured = {k: v.mean for k, v in result.metrics.items()} | result.corpus
    recorded = trial.user_attrs["metrics"]
    assert set(recorded) <= set(measured)
    for name, value in recorded.items():
        assert measured[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_the_python_api_checks_everything_before_writing(tiny: SteerableModel, tmp_path: Path) -> None:
    """run_search itself (not only the CLI) refuses a storage it cannot open before the folder exists."""
    from search.study import StorageError

    out = tmp_path / "never"
    with pytest.raises(StorageError, match="cannot be opened") as err:
        run_search(_cfg(tmp_path), out=out, model=tiny, storage="postgresql://u:secret@127.0.0.1:1/x", progress=False)
    assert "secret" not in str(err.value) and not out.exists()
