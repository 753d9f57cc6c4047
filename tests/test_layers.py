"""The layering holds: no import cycle among the project's modules (function-level imports included), the
packages import downward only (steering <- objectives <- search), and inside search/ the config sits below
the core, the core below the analyses, the analyses below the report, the report below the CLI. Importing
the config loads no analysis, report or CLI module and no matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("steering", "objectives", "search")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports anywhere in the file (top level, in functions, under TYPE_CHECKING)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `from pkg import module` or `from module import name`
                name = name.rpartition(".")[0]
            if name and name != me and not me.startswith(name + "."):  # a package is set up before its modules
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) for m, p in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_walker_sees_function_level_imports_and_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert "search.report" in _graph()["search.cli.commands"]  # a module the CLI imports is seen


def test_no_import_cycle() -> None:
    assert _cycle(_graph()) is None


LEVELS = [
    ("steering",),
    ("objectives",),
    ("search.config", "search.params"),
    ("search",),  # the core: space, objective, study, workers, vectors, mutate, adversarial, run, session...
    ("search.analysis",),
    ("search.report",),
    ("search.cli",),
]


def _level(module: str) -> int:
    best, best_len = -1, -1
    for i, prefixes in enumerate(LEVELS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{m} -> {n}"
        for m, deps in _graph().items()
        for n in deps
        if _level(n) > _level(m) and not (m == "search" and n.startswith("search."))
    ]
    assert not upward, upward


def test_importing_the_config_loads_no_analysis_report_cli_or_matplotlib() -> None:
    code = (
        "import sys, search.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('search.analysis', 'search.report', 'search.cli', "
        "'matplotlib', 'search.run', 'search.study', 'search.mutate'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
