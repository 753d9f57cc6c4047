"""The wheel works on its own: built from a copy of the source tree, installed (``--no-deps``) into a fresh
venv that sees the dev venv's dependencies but not its editable steersearch, and run from a folder outside
the repository: the CLI, the embedded model, and every shipped config found by name with its data files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
PACKAGES = ("steering", "objectives", "search")
NOT_SOURCE = {".venv", ".git", "runs", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

CHECK = """
import json, sys
from pathlib import Path
import search
from search.config import find_config, load_config, shipped_configs
configs = {}
for name in shipped_configs():
    cfg = load_config(find_config(name))
    configs[name] = {f: getattr(cfg.data, f) for f in ("gold", "prompts", "neutral", "off_target")}
print(json.dumps({"search": search.__file__, "configs": configs}))
"""


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the source tree (the repository's own build/ stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda _, names: [n for n in names if n in NOT_SOURCE or n.endswith(".egg-info")])
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist", src], tmp, _env())
    (found,) = (tmp / "dist").glob("steersearch-*.whl")
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_wheel_holds_every_module_and_the_shipped_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert source - names == set()  # pyproject lists packages explicitly: a new subpackage must be added there
    shipped = {
        f"steersearch_configs/{p.relative_to(ROOT / 'configs').as_posix()}" for p in (ROOT / "configs").rglob("*.yaml")
    }
    assert shipped and shipped - names == set()
    assert "steering/embedded/tiny-topics/model.safetensors" in names
    assert "objectives/data/minilm-l6-baseline.csv" in names


def test_installed_wheel_runs_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = _env()
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python, script = venv / "bin" / "python", venv / "bin" / "steersearch"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib], tmp_path, env).stdout.strip())
    # The dev venv's site-packages as a plain path: .pth files inside it are not processed, so its editable
    # steersearch finder stays inactive and only the wheel provides search, steering, objectives.
    (site / "_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    _run([*pip, "install", "--no-deps", "--no-index", "-q", wheel], tmp_path, env)

    work = tmp_path / "work"  # outside the repository, with no configs/ folder
    work.mkdir()
    assert "demo" in _run([script, "demo", "--help"], work, env).stdout
    gen = _run([script, "generate", "--pair", " weddings", "", "--layer", "1", "--coeff", "16", "--n", "1"], work, env)
    assert "STEERED" in gen.stdout

    report = json.loads(_run([python, "-c", CHECK], work, env).stdout)
    assert Path(report["search"]).is_relative_to(site), report["search"]  # the wheel's, not the repository's
    assert set(report["configs"]) >= {"quickstart", "love", "calm", "distill-weddings"}
    for name, data in report["configs"].items():
        for f, path in data.items():
            assert Path(path).is_relative_to(site / "steersearch_configs") and Path(path).is_file(), (name, f, path)
