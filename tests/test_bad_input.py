"""Bad input, as a table: every malformed input the CLI meets gives one line naming the field or file,
exit code 2, no traceback, and leaves run folders alone.

Each row is a ``steersearch`` argv run on ``main()`` in-process, with the files it needs written first.
``@TMP@`` is the row's own temporary folder, ``@RUN@`` a finished run folder (made once per session, whose
every file must stay byte-for-byte the same), ``@FRESH@`` an ``--out`` that must still not exist afterwards.
Every error comes before a trial runs, so the whole table takes seconds (the embedded model loads only for
checks that need its layer count or width).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from objectives.testing import FakeBertScorer
from search.cli import main
from search.config import load_config
from search.run import run_search
from search.session import Scorers
from steering.model import SteerableModel

ROOT = Path(__file__).parents[1]
GOLD = ROOT / "configs" / "gold"
EMBEDDED = {"d_model": 256, "n_layers": 4}  # steering/embedded/tiny-topics

BASE: dict[str, Any] = {
    "name": "bad-input",
    "model": {"source": None},
    "data": {
        "gold": str(GOLD / "weddings.yaml"),
        "prompts": str(GOLD / "prompts.yaml"),
        "neutral": str(GOLD / "neutral.yaml"),
        "off_target": str(GOLD / "off_target.yaml"),
    },
    "generation": {"max_new_tokens": 4, "n": 1},
    "objective": {"terms": [{"metric": "bertscore_f1"}]},
    "pairs": {"hand_written": [["The bride and the groom", ""]]},
    "space": {"layer": {"low": 0, "high": 1}, "coeff": {"low": 0.5, "high": 8.0, "log": True}},
    "fidelity": {"rungs": [1]},
    "study": {"n_trials": 1, "seed": 0},
}
"""A valid config: the one that made the ``@RUN@`` folder."""

Files = dict[str, "str | bytes | Callable[[Path], None]"]


def config(changes: dict[str, Any] | None = None, *, extra: str = "") -> str:
    """``BASE`` as YAML with ``changes`` (dotted paths, e.g. ``space.frac``) applied, then ``extra`` text."""
    data = copy.deepcopy(BASE)
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False) + extra


def run(ident: str, needle: str, text: str | bytes, *flags: str, out: str = "@RUN@", files: Files | None = None):
    """A ``steersearch run @TMP@/c.yaml --out OUT FLAGS`` row on config text ``text``."""
    argv = ["run", "@TMP@/c.yaml", "--out", out, *flags]
    return pytest.param(argv, needle, {"c.yaml": text, **(files or {})}, id=ident)


def fresh(ident: str, needle: str, text: str | bytes, *flags: str, files: Files | None = None):
    """A ``run`` row whose error comes after the run folder check: ``--out`` is a new folder."""
    return run(ident, needle, text, *flags, out="@FRESH@", files=files)


def data(ident: str, field: str, needle: str, content: str | bytes | None):
    """A row whose ``data.FIELD`` file holds ``content`` (None: the file does not exist)."""
    files: Files = {} if content is None else {"d.yaml": content}
    return fresh(ident, needle, config({f"data.{field}": "@TMP@/d.yaml"}), files=files)


def cli(ident: str, needle: str, *argv: str, files: Files | None = None):
    return pytest.param(list(argv), needle, files or {}, id=ident)


GENERATE = ("generate", "--pair", "Love", "Hate", "--coeff", "2", "--n", "1")


NO_FILE = "<no file>"


def vector(
    *,
    d_model: int = EMBEDDED["d_model"],
    layer: int = 1,
    fill: float = 0.5,
    shape: tuple[int, ...] | None = None,
    key: str = "activations",
    truncate: int | None = None,
    meta: str | None = None,
) -> Callable[[Path], None]:
    """Writes ``v.safetensors`` + ``v.json`` as ``SteeringVector.save`` does, or broken in one way (the
    tensor file bypasses ``SteeringVector``, so NaN values can be written)."""

    def write(tmp: Path) -> None:
        save_file({key: torch.full(shape or (3, d_model), fill)}, str(tmp / "v.safetensors"))
        if truncate is not None:
            body = (tmp / "v.safetensors").read_bytes()
            (tmp / "v.safetensors").write_bytes(body[:truncate])
        if meta != NO_FILE:
            (tmp / "v.json").write_text(json.dumps({"layer": layer, "metadata": {}}) if meta is None else meta)

    return write


def with_vector(ident: str, needle: str, write: Callable[[Path], None], *flags: str):
    argv = ["generate", "--vector", "@TMP@/v.safetensors", "--n", "1", *flags]
    return pytest.param(argv, needle, {"": write}, id=ident)


WEDDINGS = (GOLD / "weddings.yaml").read_text()
PROMPTS = (GOLD / "prompts.yaml").read_text()
TAG = '!!python/object/apply:os.system ["touch @TMP@/pwned"]\n'

ROWS = [
    # --- numeric ranges in the config ---
    run("space.layer-negative", "space.layer.low must be >= 0", config({"space.layer": {"low": -1, "high": 1}})),
    run(
        "space.layer-low-above-high",
        "space.layer.low 3 is above high 1",
        config({"space.layer": {"low": 3, "high": 1}}),
    ),
    fresh(
        "space.layer-beyond-model", "space.layer.high 9 is out of range", config({"space.layer": {"low": 0, "high": 9}})
    ),
    run(
        "space.coeff-log-low-0",
        "space.coeff: a log range needs low > 0",
        config({"space.coeff": {"low": 0.0, "high": 8.0, "log": True}}),
    ),
    run(
        "space.coeff-low-above-high",
        "space.coeff.low 9.0 is above high 1.0",
        config({"space.coeff": {"low": 9, "high": 1}}),
    ),
    run(
        "space.coeff-inf",
        "space.coeff: a range needs finite bounds, got low 1.0, high inf",
        config({"space.coeff": {"low": 1, "high": float("inf")}}),
    ),
    run(
        "space.coeff-nan",
        "space.coeff.low: expected a number, got nan",
        config({"space.coeff": {"low": float("nan"), "high": 1}}),
    ),
    run("space.frac-below-0", "space.frac must lie in (0, 1]", config({"space.frac": {"low": -0.5, "high": 1.0}})),
    run("space.frac-0", "space.frac must lie in (0, 1]", config({"space.frac": {"values": [0.0, 0.5]}})),
    run("space.frac-above-1", "space.frac must lie in (0, 1]", config({"space.frac": {"values": [1.5]}})),
    run("space.n_additions-0", "space.n_additions must be >= 1", config({"space.n_additions": {"low": 0, "high": 1}})),
    run("generation.top_p-0", "generation: invalid generation setting top_p=0.0", config({"generation.top_p": 0})),
    run(
        "generation.top_p-above-1",
        "generation: invalid generation setting top_p=1.5",
        config({"generation.top_p": 1.5}),
    ),
    run(
        "generation.top_p-nan",
        "generation.top_p: expected a number, got nan",
        config({"generation.top_p": float("nan")}),
    ),
    run("generation.temperature-negative", "setting temperature=-1.0", config({"generation.temperature": -1})),
    run("generation.max_new_tokens-0", "setting max_new_tokens=0", config({"generation.max_new_tokens": 0})),
    run("generation.n-0", "setting n=0", config({"generation.n": 0})),
    run("study.n_trials-0", "study.n_trials must be >= 1, got 0", config({"study.n_trials": 0})),
    run("study.timeout-negative", "study.timeout must be > 0 seconds", config({"study.timeout": -5})),
    run("fidelity.rungs-decreasing", "fidelity.rungs must be increasing", config({"fidelity.rungs": [4, 2]})),
    run("fidelity.rungs-0", "fidelity.rungs must be >= 1", config({"fidelity.rungs": [0]})),
    run("compare.n-0", "compare.n must be >= 1, got 0", config({"compare.n": 0})),
    run("compare.bootstrap-5", "compare.bootstrap must be >= 10, got 5", config({"compare.bootstrap": 5})),
    run("learned.lr-0", "space.learned.lr must be > 0", config({"space.learned": {"lr": {"low": 0.0, "high": 0.1}}})),
    run(
        "learned.lr-log-low-0",
        "space.learned.lr: a log range needs low > 0",
        config({"space.learned": {"lr": {"low": 0.0, "high": 0.1, "log": True}}}),
    ),
    run(
        "learned.steps-0",
        "space.learned.steps.low must be >= 1",
        config({"space.learned": {"steps": {"low": 0, "high": 5}}}),
    ),
    run("learned.batch_size-0", "space.learned.batch_size must be >= 1", config({"space.learned": {"batch_size": 0}})),
    # --- every enum ---
    run("study.sampler", "study.sampler: 'bogus' is not allowed; allowed: tpe", config({"study.sampler": "bogus"})),
    run("study.pruner", "study.pruner: 'bogus' is not allowed; allowed: none", config({"study.pruner": "bogus"})),
    run("model.dtype", "model.dtype: 'float64' is not allowed", config({"model.dtype": "float64"})),
    run(
        "space.masks",
        "space.masks: 'middle' is not a mask; allowed: first, random",
        config({"space.masks": ["middle"]}),
    ),
    run(
        "space.positions", "space.positions must be 'front', 'all' or 'from:K'", config({"space.positions": ["middle"]})
    ),
    run(
        "space.positions-from-x",
        "space.positions must be 'front', 'all' or 'from:K'",
        config({"space.positions": ["from:x"]}),
    ),
    run("space.kinds", "space.kinds must list some of pair, learned", config({"space.kinds": ["vector"]})),
    run(
        "learned.init",
        "space.learned.init must list some of zeros, pair",
        config({"space.learned": {"init": ["random"]}}),
    ),
    run("learned.positions", "space.learned.positions must be", config({"space.learned": {"positions": "middle"}})),
    run("objective.kind", "objective.kind: 'pareto' is not allowed", config({"objective.kind": "pareto"})),
    run(
        "objective.metric",
        "objective.terms[0]: unknown metric 'bleu'",
        config({"objective.terms": [{"metric": "bleu"}]}),
    ),
    run(
        "baselines.mask",
        "baselines[0].mask: 'middle' is not allowed",
        config({"baselines": [{"pair": ["a", "b"], "layer": 0, "coeff": 1, "mask": "middle"}]}),
    ),
    # --- empty lists ---
    run("pairs-empty", "pairs: pairs needs hand_written pairs", config({"pairs": {"hand_written": []}})),
    run("space.masks-empty", "space.masks needs at least one entry", config({"space.masks": []})),
    run("space.positions-empty", "space.positions needs at least one entry", config({"space.positions": []})),
    run("space.kinds-empty", "space.kinds must list some of", config({"space.kinds": []})),
    run("objective.terms-empty", "objective: objective needs at least one term", config({"objective.terms": []})),
    run(
        "fidelity.rungs-empty",
        "fidelity.rungs must list at least one sample count",
        config({"fidelity.rungs": []}),
    ),
    # --- wrong types ---
    run("study.n_trials-string", "study.n_trials: expected int, got 'ten'", config({"study.n_trials": "ten"})),
    run("generation.n-float", "generation.n: expected int, got 1.5", config({"generation.n": 1.5})),
    run("generation.n-bool", "generation.n: expected int, got True", config({"generation.n": True})),
    run("space-list", "space: expected a mapping, got list", config({"space": [1, 2]})),
    run(
        "pairs.hand_written-string", "pairs.hand_written: expected a list, got str", config({"pairs.hand_written": "a"})
    ),
    run(
        "pair-of-three",
        "pairs.hand_written[0]: expected a list of 2 items",
        config({"pairs.hand_written": [["a", "b", "c"]]}),
    ),
    run("name-int", "name: expected str, got 5", config({"name": 5})),
    run("name-path", "name '../x' must be a plain folder name", config({"name": "../x"})),
    run(
        "baselines-missing-coeff",
        "baselines[0]: missing field 'coeff'",
        config({"baselines": [{"pair": ["a", "b"], "layer": 0}]}),
    ),
    # --- unknown keys ---
    run("unknown-top-level", "config: unknown field 'bogus'", config(extra="bogus: 1\n")),
    run("unknown-nested", "generation: unknown field 'topp'", config({"generation.topp": 0.3})),
    run("unknown-deep", "space.learned: unknown field 'rate'", config({"space.learned": {"rate": 0.1}})),
    run("unknown-number-key", "config: unknown field 1;", config(extra="1: one\nbogus: two\n")),
    # --- files that are no config ---
    run("python-tag", "could not determine a constructor for the tag", TAG),
    run("python-tag-nested", "python/object/apply:os.system", "name: " + TAG),
    run("not-yaml", "c.yaml' is not valid YAML: while parsing a flow node", "pairs: [\n"),
    run("not-yaml-tab", "c.yaml' is not valid YAML: while scanning", "a:\n\t- b\n"),
    run("binary", "c.yaml' is not valid YAML: 'utf-8' codec", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"),
    run("yaml-list", "config: expected a mapping, got list", "- a\n- b\n"),
    fresh("empty-file", "pairs: required for `run`", ""),
    cli("config-missing", "'@TMP@/nope.yaml': no such file", "run", "@TMP@/nope.yaml", "--out", "@FRESH@"),
    cli("config-is-a-folder", "config '@TMP@': no such file", "run", "@TMP@", "--out", "@FRESH@"),
    cli(
        "generate-config-missing",
        "--config 'nope.yaml': no such file",
        *GENERATE,
        "--layer",
        "0",
        "--config",
        "nope.yaml",
    ),
    # --- command-line arguments ---
    run("--n-trials-0", "--n-trials must be >= 1, got 0", config(), "--n-trials", "0"),
    run("--n-trials-text", "argument --n-trials: invalid int value: 'ten'", config(), "--n-trials", "ten"),
    run("--workers-0", "--workers must be >= 1, got 0", config(), "--workers", "0"),
    run("--timeout-0", "--timeout must be > 0 seconds, got 0.0", config(), "--timeout", "0"),
    run("--timeout-nan", "--timeout must be > 0 seconds, got nan", config(), "--timeout", "nan"),
    run("unknown-flag", "unrecognized arguments: --bogus", config(), "--bogus"),
    cli("no-command", "the following arguments are required: command"),
    cli("run-no-config", "the following arguments are required: config", "run"),
    run("--out-is-a-file", "--out @TMP@/c.yaml is a file, not a folder", config(), out="@TMP@/c.yaml"),
    run("--out-unwritable", "--out /proc/x/run: cannot create files in /proc", config(), out="/proc/x/run"),
    cli("generate-layer-7", "--layer 7 is out of range: ", *GENERATE, "--layer", "7"),
    cli("generate-layer-negative", "--layer -1 is out of range", *GENERATE, "--layer", "-1"),
    cli("generate-empty-prompt", "--prompt is empty", *GENERATE, "--layer", "0", "--prompt", ""),
    cli("generate-no-layer", "--layer is required with --pair", *GENERATE),
    cli("generate-no-coeff", "--coeff is required with --pair", "generate", "--pair", "a", "b", "--layer", "0"),
    cli("generate-nothing", "one of the arguments --pair --vector is required", "generate", "--layer", "0"),
    cli(
        "generate-positions",
        "positions must be 'front', 'all' or 'from:K'",
        *GENERATE,
        "--layer",
        "0",
        "--positions",
        "from:x",
    ),
    cli("generate-frac-0", "frac must be in (0, 1]", *GENERATE, "--layer", "0", "--frac", "0"),
    cli("generate-coeff-nan", "coeff must be finite", "generate", "--pair", "a", "b", "--layer", "0", "--coeff", "nan"),
    cli("generate-mask", "argument --mask: invalid choice: 'middle'", *GENERATE, "--layer", "0", "--mask", "middle"),
    cli(
        "generate-n-0",
        "invalid generation setting n=0",
        "generate",
        "--pair",
        "a",
        "b",
        "--layer",
        "0",
        "--coeff",
        "1",
        "--n",
        "0",
    ),
    # --- storage URLs ---
    fresh(
        "storage-mysql-no-driver",
        "storage mysql://u@h/db: its database driver is not installed",
        config(),
        "--storage",
        "mysql://u@h/db",
    ),
    fresh(
        "storage-postgres-unreachable",
        "storage postgresql://u@127.0.0.1:1/x cannot be opened",
        config(),
        "--storage",
        "postgresql://u:secret@127.0.0.1:1/x",
    ),
    fresh("storage-journal-proc", "storage journal:/proc/x/j.log: ", config(), "--storage", "journal:/proc/x/j.log"),
    fresh("storage-sqlite-proc", "storage sqlite:////proc/x/s.db: ", config(), "--storage", "sqlite:////proc/x/s.db"),
    fresh("storage-unknown-scheme", "storage bogus://x cannot be opened", config(), "--storage", "bogus://x"),
    fresh(
        "study.storage-in-config",
        "storage mysql://u@h/db: its database driver",
        config({"study.storage": "mysql://u@h/db"}),
    ),
    run(
        "storage-not-the-run-folders",
        "used storage study.db, not journal:",
        config(),
        "--storage",
        "journal:@TMP@/j.log",
    ),
    cli(
        "report-storage",
        "storage mysql://u@h/db: its database driver",
        "report",
        "@RUN@",
        "--storage",
        "mysql://u@h/db",
    ),
    cli("report-no-run-folder", "config file '@TMP@/nope/config.yaml' does not exist", "report", "@TMP@/nope"),
    # --- gold and prompt files ---
    data("gold-missing", "gold", "data.gold: file '@TMP@/d.yaml' does not exist", None),
    data("gold-empty", "gold", "data.gold: file '@TMP@/d.yaml': expected a mapping at the top level", ""),
    data("gold-list", "gold", "data.gold: file '@TMP@/d.yaml': expected a mapping", "- a\n- b\n"),
    data("gold-no-splits", "gold", "data.gold: d.yaml: missing field 'search'", "name: x\nkeywords: [a]\n"),
    data("gold-truncated", "gold", "data.gold: d.yaml: missing field 'heldout'", WEDDINGS[:600]),
    data("gold-truncated-mid-list", "gold", "data.gold: file '@TMP@/d.yaml' is not valid YAML", WEDDINGS[:120]),
    data("gold-not-utf8", "gold", "data.gold: file '@TMP@/d.yaml' is not UTF-8", b"search: [\xff\xfe]\n"),
    data(
        "gold-search-not-strings",
        "gold",
        "data.gold: d.yaml.search: expected a list of strings",
        "search: [1]\nheldout: [a]\n",
    ),
    data("prompts-empty", "prompts", "data.prompts: file '@TMP@/d.yaml': expected a mapping", ""),
    data("prompts-list", "prompts", "data.prompts: file '@TMP@/d.yaml': expected a mapping", "- I said\n"),
    data("prompts-truncated", "prompts", "data.prompts: d.yaml: missing field 'heldout'", PROMPTS[:300]),
    data("prompts-search-empty", "prompts", "data.prompts: d.yaml.search is empty", "search: []\nheldout: [a]\n"),
    data("neutral-missing", "neutral", "data.neutral: file '@TMP@/d.yaml' does not exist", None),
    fresh(
        "suppress-missing",
        "space.learned.suppress: file '@TMP@/s.yaml' does not exist",
        config({"space.learned": {"suppress": "@TMP@/s.yaml"}}),
    ),
    fresh(
        "suppress-truncated",
        "space.learned.suppress: d.yaml: missing field 'heldout'",
        config({"space.learned": {"suppress": "@TMP@/d.yaml"}}),
        files={"d.yaml": WEDDINGS[:600]},
    ),
    fresh(
        "scorer.model-missing",
        "scorer.model: file '/nonexistent/encoder' does not exist",
        config({"scorer": {"model": "/nonexistent/encoder"}}),
    ),
    fresh(
        "model.source-missing",
        "model path '/nonexistent/model' does not exist",
        config({"model.source": "/nonexistent/model"}),
    ),
    # --- saved steering vectors (generate --vector) ---
    cli(
        "vector-missing",
        "steering vector file @TMP@/nope.safetensors does not exist",
        "generate",
        "--vector",
        "@TMP@/nope.safetensors",
    ),
    with_vector("vector-truncated", "v.safetensors is not a valid safetensors file", vector(truncate=-100)),
    with_vector("vector-truncated-header", "v.safetensors is not a valid safetensors file", vector(truncate=5)),
    with_vector("vector-empty-file", "v.safetensors is not a valid safetensors file", vector(truncate=0)),
    with_vector("vector-json-missing", "steering vector file @TMP@/v.json does not exist", vector(meta=NO_FILE)),
    with_vector("vector-json-invalid", "steering vector metadata @TMP@/v.json is not valid JSON", vector(meta="{")),
    with_vector(
        "vector-json-no-layer", "steering vector metadata @TMP@/v.json: expected", vector(meta='{"metadata": {}}')
    ),
    with_vector("vector-json-layer-text", "v.json: expected", vector(meta='{"layer": "1", "metadata": {}}')),
    with_vector("vector-wrong-key", "has no float 'activations' tensor", vector(key="weights")),
    with_vector("vector-wrong-shape", "v.safetensors: activations must be [n_pos, d_model]", vector(shape=(2, 3, 256))),
    with_vector("vector-nan", "v.safetensors: steering vector has NaN or inf values", vector(fill=float("nan"))),
    with_vector("vector-inf", "v.safetensors: steering vector has NaN or inf values", vector(fill=float("inf"))),
    with_vector("vector-d_model", "v.safetensors: d_model 32, but ", vector(d_model=32)),
    with_vector("vector-layer-9", "v.safetensors: layer 9 is out of range: ", vector(layer=9)),
    with_vector("vector-with-layer", "--layer is not allowed with --vector", vector(), "--layer", "0"),
    cli("vector-and-pair", "argument --vector: not allowed with argument --pair", *GENERATE, "--vector", "v"),
    # --- a run folder made by another config ---
    run(
        "run-folder-of-another-config",
        "run folder @RUN@ was made by a different config (differs in: study)",
        config({"study.seed": 1}),
    ),
    run(
        "run-folder-of-another-model",
        "was made by a different config (differs in: model)",
        config({"model.dtype": "float16"}),
    ),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``, each file with the SHA-256 of its bytes; a SQLite database by
    its content. The study database is in WAL mode: when a connection an earlier test left behind is garbage
    collected, SQLite checkpoints the write-ahead log into the file and removes ``-wal``/``-shm``, which
    rewrites bytes (not rows) at a moment no test chooses."""
    return {
        p.relative_to(folder).as_posix(): _digest(p) if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
        if not p.name.endswith(("-wal", "-shm"))
    }


def _digest(path: Path) -> str:
    if path.suffix != ".db":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


@pytest.fixture(scope="session")
def run_folder(tiny: SteerableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-trial run of ``BASE`` (the tiny model and the fake BERTScore stand in, as the embedded
    model's config cannot tell: nothing below runs a trial)."""
    root = tmp_path_factory.mktemp("bad-input-run")
    (root / "c.yaml").write_text(config())
    out = root / "run"
    run_search(
        load_config(root / "c.yaml"), out=out, model=tiny, scorers=Scorers(bert=FakeBertScorer()), progress=False
    )
    assert {"config.yaml", "run.json", "study.db", "best.json", "trials.csv"} <= {p.name for p in out.iterdir()}
    return out


@pytest.mark.parametrize("argv,needle,files", ROWS)
def test_bad_input(
    argv: list[str],
    needle: str,
    files: Files,
    run_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fill(text: str) -> str:
        return text.replace("@TMP@", str(tmp_path)).replace("@RUN@", str(run_folder)).replace("@FRESH@", str(fresh))

    fresh = tmp_path / "fresh"
    for name, content in files.items():
        if callable(content):
            content(tmp_path)
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(fill(content))
    before = snapshot(run_folder)
    capsys.readouterr()
    try:
        code = main([fill(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()

    assert code == 2, f"exit {code}; stderr: {err!r}"
    assert len(err.splitlines()) == 1 and err.strip(), f"not one line: {err!r}"
    assert err.startswith("steersearch") and "Traceback" not in err, err
    assert fill(needle) in err, err
    assert out == "", f"stdout: {out!r}"
    assert "secret" not in err  # a password in a storage URL never reaches the error line
    assert not (tmp_path / "pwned").exists(), "a !!python tag was executed"
    assert snapshot(run_folder) == before, "the run folder changed"
    assert not fresh.exists(), f"{fresh} was created"
