"""The interactive report: Optuna's plotly figures in one self-contained ``interactive.html``, linked from
``report.html`` and ``report.md``, with plotly.js inlined once and nothing fetched from the network; and, in
headless Chromium (installed by tests/with_chromium.sh under `make test`), every figure gets drawn offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest

from objectives.testing import FakeBertScorer
from search.config import load_config
from search.report import write_report
from search.report.interactive import INTERACTIVE, interactive_figures
from search.run import run_search
from search.session import Scorers
from steering.model import SteerableModel
from tests.helpers import SMALL_CONFIG

ROOT = Path(__file__).parents[1]
CHROMIUM = Path("/usr/bin/chromium")

CONFIG = (
    SMALL_CONFIG.replace("name: t\n", "name: inter\n")
    .replace(
        "  coeff: {low: 0.5, high: 8, log: true}\n",
        "  coeff: {low: 0.5, high: 8, log: true}\n  frac: {low: 0.3, high: 1.0}\n",
    )
    .replace("study: {n_trials: 3, seed: 0}", "study: {n_trials: 6, seed: 0, pruner: median}")
)

SCALAR_FIGURES = ["Optimisation history", "Parameter importances", "frac × coeff", "Intermediate values"]


class _Sources(HTMLParser):
    """Every ``src``/``href`` of the page's tags (script bodies are not parsed as tags), the scripts' sources
    and the ``<h2>`` headings."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script_srcs: list[str] = []
        self.headings: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]
        if tag == "script":
            self.script_srcs += [v or "" for k, v in attrs if k == "src"]
        self._h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        self._h2 = False

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.headings.append(data)


def _parse(path: Path) -> tuple[str, _Sources]:
    text = path.read_text(encoding="utf-8")
    parser = _Sources()
    parser.feed(text)
    return text, parser


@pytest.fixture(scope="module")
def run_dir(tiny: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-trial scalar run (frac and coeff vary, median pruning) with its report written."""
    tmp = tmp_path_factory.mktemp("interactive")
    (tmp / "exp.yaml").write_text(CONFIG)
    out = tmp / "run"
    study = run_search(
        load_config(tmp / "exp.yaml"), out=out, model=tiny, scorers=Scorers(bert=FakeBertScorer()), progress=False
    )
    assert any(t.intermediate_values for t in study.trials)
    write_report(out, study, ["bertscore_f1"])
    return out


def test_the_interactive_page_stands_alone_and_is_linked(run_dir: Path) -> None:
    page = run_dir / INTERACTIVE
    text, parsed = _parse(page)
    assert parsed.headings == SCALAR_FIGURES  # no Pareto front: single-objective
    # plotly.js inlined exactly once; one plot per figure; no MathJax, no CDN, nothing remote at all.
    assert text.count("* plotly.js v") == 1 and text.count("Plotly.newPlot(") == len(SCALAR_FIGURES)
    assert all(not u.lower().startswith(("http:", "https:", "//")) for u in parsed.urls), parsed.urls
    assert parsed.script_srcs == []  # every script inline: the file stands alone
    assert page.stat().st_size > 1_000_000  # the bundle is in the file
    # Linked from both static reports, which keep their PNGs.
    assert f"[{INTERACTIVE}]({INTERACTIVE})" in (run_dir / "report.md").read_text()
    static_html, static = _parse(run_dir / "report.html")
    assert INTERACTIVE in static.urls and "data:image/png;base64," in static_html
    assert (run_dir / "figures" / "history.png").exists() and (run_dir / "figures" / "frac_coeff.png").exists()


def _study(directions: list[str], names: list[str] | None, vary_frac: bool) -> optuna.Study:
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=0))
    if names:
        study.set_metric_names(names)

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        coeff = trial.suggest_float("coeff", 0.5, 8)
        frac = trial.suggest_float("frac", 0.3, 1.0) if vary_frac else 1.0
        layer = trial.suggest_int("layer", 0, 3)
        return (coeff * frac, layer + frac) if len(directions) > 1 else coeff * frac - layer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=8)
    return study


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # set_metric_names
def test_each_figure_only_where_it_applies() -> None:
    multi = _study(["maximize", "minimize"], ["bertscore_f1", "kl"], vary_frac=True)
    titles = [title for title, _, _ in interactive_figures(multi, ["bertscore_f1", "kl"])]
    assert titles == [
        "Optimisation history: bertscore_f1",
        "Optimisation history: kl",
        "Parameter importances",
        "frac × coeff: bertscore_f1",
        "frac × coeff: kl",
        "Pareto front",
    ]  # no intermediate values: nothing was reported
    (pareto,) = [fig for title, _, fig in interactive_figures(multi, []) if title == "Pareto front"]
    assert pareto.layout.xaxis.title.text == "bertscore_f1"  # the study's metric names

    fixed_frac = _study(["maximize"], None, vary_frac=False)
    assert [t for t, _, _ in interactive_figures(fixed_frac, ["bertscore_f1"])] == [
        "Optimisation history",
        "Parameter importances",
    ]  # no contour: frac does not vary
    empty = optuna.create_study()
    assert interactive_figures(empty, ["bertscore_f1"]) == []


# --- headless Chromium --------------------------------------------------------------------------------------


def _chromium(tmp: Path, url: str, *extra: str) -> tuple[str, list[str]]:
    """Open ``url`` in headless Chromium; returns the dumped DOM and the URLs the page asked the network for
    (from Chromium's net log; the browser's own background requests are left out). Name resolution is
    mapped to failure, so nothing leaves the machine whatever the page does."""
    profile, netlog = tmp / "profile", tmp / "net.json"
    shutil.rmtree(profile, ignore_errors=True)
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--log-net-log={netlog}",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = json.loads(netlog.read_text())
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    asked = [
        e["params"]["url"]
        for e in log["events"]
        if types.get(e["type"]) == "URL_REQUEST_START_JOB"
        and str(e.get("params", {}).get("network_isolation_key", "")).startswith("file://")  # the page's own
    ]
    return done.stdout, asked


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is not installed: run the tests through tests/with_chromium.sh (as `make test` does)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI must run the headless-browser test, not skip it)")
        pytest.skip(why)


@pytest.mark.slow
def test_headless_chromium_draws_every_figure_offline(run_dir: Path, tmp_path: Path) -> None:
    _need_chromium()
    # The net-log check sees a page's requests (else a silent pass would prove nothing).
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><script src="https://cdn.example.invalid/plotly.min.js"></script><p>x</p>')
    _, asked = _chromium(tmp_path, bad.as_uri())
    assert asked == ["https://cdn.example.invalid/plotly.min.js"]

    dom, asked = _chromium(tmp_path, (run_dir / INTERACTIVE).as_uri(), "--dump-dom")
    assert asked == []  # no network request at all, failed or not
    assert dom.count('class="main-svg"') >= len(SCALAR_FIGURES)  # plotly drew an SVG for every figure
    assert len(re.findall(r'class="plotly-graph-div js-plotly-plot"', dom)) == len(SCALAR_FIGURES), dom[:2000]
    assert 'data-title="Zoom"' in dom and 'data-title="Share chart..."' not in dom  # a modebar, no upload button

    shot = tmp_path / "interactive.png"
    _chromium(tmp_path, (run_dir / INTERACTIVE).as_uri(), "--window-size=1200,2600", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000  # not a blank page
