"""Dashboard-friendly storage, read through optuna-dashboard's own API: the study's objective names, and on
every trial one numeric user attribute per raw metric (``metric_kl``...) and the candidate's ``label``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from objectives import Constraint, Objective, ObjectiveSpec, Term
from objectives.testing import FakeBertScorer
from search.config import load_config
from search.objective import METRIC_ATTR_PREFIX, SteeringObjective
from search.run import run_search
from search.session import Scorers
from search.space import Candidate
from steering.model import SteerableModel
from tests.helpers import SMALL_CONFIG

ROOT = Path(__file__).parents[1]

CONFIG = SMALL_CONFIG.replace("name: t\n", "name: dash\n").replace(
    "constraints: [{metric: ppl_ratio, max: 1.5}]", "constraints: [{metric: ppl_ratio, max: 1.5}, {metric: kl, max: 2}]"
)

MULTI = CONFIG.replace(
    "  terms: [{metric: bertscore_f1}]\n  constraints: [{metric: ppl_ratio, max: 1.5}, {metric: kl, max: 2}]\n",
    "  kind: multi\n  terms: [{metric: bertscore_f1}, {metric: kl}, {metric: ppl_ratio}]\n",
).replace("seed: 0}", "seed: 0, sampler: nsga2}")

CASES = {
    "scalar": (CONFIG, ["bertscore_f1 - penalty(ppl_ratio<=1.5, kl<=2)"]),
    "multi": (MULTI, ["bertscore_f1", "kl", "ppl_ratio"]),
}


def _get(app: Any, path: str) -> dict[str, Any]:
    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    env["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(env, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], (path, status, body[:300])
    return json.loads(body)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_dashboard_sees_metric_names_numeric_metrics_and_labels(
    tiny: SteerableModel, tmp_path: Path, case: str
) -> None:
    import optuna_dashboard

    text, names = CASES[case]
    (tmp_path / "exp.yaml").write_text(text)
    out = tmp_path / "run"
    study = run_search(
        load_config(tmp_path / "exp.yaml"),
        out=out,
        model=tiny,
        scorers=Scorers(bert=FakeBertScorer()),
        n_trials=3,
        progress=False,
    )
    assert study.metric_names == names  # Optuna's own view of them, too

    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")
    (summary,) = _get(app, "/api/studies")["study_summaries"]
    detail = _get(app, f"/api/studies/{summary['study_id']}")  # what the dashboard's study page loads
    assert detail["name"] == "dash"
    assert detail["objective_names"] == names

    # Sortable (numeric) columns for each raw metric, the objective's metrics among them.
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    for metric in ("bertscore_f1", "kl", "ppl_ratio"):
        assert sortable[METRIC_ATTR_PREFIX + metric] is True, sortable
    assert sortable["label"] is False and sortable["metrics"] is False  # text, and the full dict (kept)

    trials = detail["trials"]
    assert len(trials) == 3 and all(t["state"] == "Complete" for t in trials)
    for shown in trials:
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        stored = study.trials[shown["number"]]
        raw = stored.user_attrs["metrics"]
        assert {"bertscore_f1", "kl", "ppl_ratio"} <= set(raw)
        for metric, value in raw.items():  # every raw metric, numeric, equal to the dict's value
            assert isinstance(stored.user_attrs[METRIC_ATTR_PREFIX + metric], float)
            assert math.isclose(float(attrs[METRIC_ATTR_PREFIX + metric]), value, rel_tol=1e-12)
        assert attrs["label"] == Candidate.from_record(stored.user_attrs["candidate"]).describe()
        if shown["number"] == 0:  # the enqueued hand-written baseline
            pair = "'I talk about weddings constantly' / 'I do not talk about weddings constantly'"
            assert attrs["label"] == f"{pair} L1 c4"


def test_objective_names() -> None:
    def names(spec: ObjectiveSpec) -> list[str]:
        return SteeringObjective.metric_names(Objective(spec))

    assert names(ObjectiveSpec()) == ["bertscore_f1"]
    weighted = (Term("bertscore_f1", 0.7), Term("embedding_sim", 0.3), Term("kl", -0.5))
    assert names(ObjectiveSpec(terms=weighted)) == ["0.7*bertscore_f1 + 0.3*embedding_sim - 0.5*kl"]
    band = (Constraint("ppl_ratio", min=0.9, max=1.2),)
    assert names(ObjectiveSpec(terms=(Term("kl", -1),), constraints=band)) == [
        "-kl - penalty(ppl_ratio>=0.9, ppl_ratio<=1.2)"
    ]
    two = (Term("bertscore_f1"), Term("kl"))
    assert names(ObjectiveSpec(kind="multi", terms=two, constraints=band)) == ["bertscore_f1", "kl"]


def test_a_resumed_study_keeps_its_names(tiny: SteerableModel, tmp_path: Path) -> None:
    """Names are set by the worker that creates the study; a resume (or another worker) leaves them."""
    (tmp_path / "exp.yaml").write_text(CONFIG)
    cfg, out = load_config(tmp_path / "exp.yaml"), tmp_path / "run"
    run_search(cfg, out=out, model=tiny, scorers=Scorers(bert=FakeBertScorer()), n_trials=1, progress=False)
    again = run_search(cfg, out=out, model=tiny, scorers=Scorers(bert=FakeBertScorer()), n_trials=2, progress=False)
    assert again.metric_names == CASES["scalar"][1]
    loaded = optuna.load_study(study_name="dash", storage=f"sqlite:///{out / 'study.db'}")
    assert loaded.metric_names == CASES["scalar"][1] and len(loaded.trials) == 2
