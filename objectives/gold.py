"""Gold passage sets and prompt sets, each split into three parts, each used once: ``search`` (the study
optimises on it), ``validation`` (the winner is selected on it) and ``heldout`` (the test split: only the
winner and the baselines are reported on it).

Files live in ``configs/gold/``. A gold set (``weddings.yaml``)::

    name: weddings
    keywords: [wedding, bride, ...]        # ActAdd-style keyword list (legacy metric)
    search: [passage, ...]                 # what the search scores against
    validation: [passage, ...]             # what selection scores against (optional; selection needs it)
    heldout: [passage, ...]                # the test split: used only by the final comparison
    negative: [passage, ...]               # optional: text to steer away from

A split set (``prompts.yaml``, ``neutral.yaml``, ``off_target.yaml``) has ``search``, ``validation`` and
``heldout``. A file without ``validation`` still loads (older files); selecting a winner then fails with a
message that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPLITS = ("search", "validation", "heldout")
"""The three parts of every text set, in the order they are used."""


@dataclass(frozen=True)
class Split:
    search: tuple[str, ...]
    heldout: tuple[str, ...]
    validation: tuple[str, ...] = ()
    source: str = ""  # the file it was read from, for error messages

    def part(self, name: str) -> tuple[str, ...]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        texts: tuple[str, ...] = getattr(self, name)
        if not texts:
            where = f"{self.source}: " if self.source else ""
            raise ValueError(f"{where}no {name!r} texts (add a {name}: list to the file)")
        return texts


@dataclass(frozen=True)
class GoldSet:
    name: str
    passages: Split
    keywords: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"file {str(p)!r} is not UTF-8 text: {err}") from err
    except yaml.YAMLError as err:
        raise ValueError(f"file {str(p)!r} is not valid YAML: {yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise ValueError(f"file {str(p)!r}: expected a mapping at the top level")
    return data


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message spans several lines).

    Example:
        >>> try:
        ...     yaml.safe_load("a: [")
        ... except yaml.YAMLError as err:
        ...     yaml_problem(err)
        "while parsing a flow node: expected the node content, but found '<stream end>' (line 1, column 5)"
    """
    problem = getattr(err, "problem", None)
    if not problem:
        return " ".join(str(err).split())
    context = getattr(err, "context", None)
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{context + ': ' if context else ''}{problem}{where}".split())


def _texts(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> tuple[str, ...]:
    value = data.get(key, [] if not required else None)
    if value is None:
        raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}.{key}: expected a list of strings")
    texts = tuple(" ".join(v.split()) for v in value)
    if required and not texts:
        raise ValueError(f"{where}.{key} is empty")
    if any(not t for t in texts):
        raise ValueError(f"{where}.{key} has a blank entry")
    return texts


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")


def load_split(path: str | Path) -> Split:
    """Read a ``search``/``heldout`` text set."""
    data = _read_yaml(path)
    where = Path(path).name
    _check_keys(data, ("description", *SPLITS), where)
    return _split(data, where)


def _split(data: dict[str, Any], where: str) -> Split:
    validation = _texts(data, "validation", where, required=False)
    if "validation" in data and not validation:
        raise ValueError(f"{where}.validation is empty")
    return Split(_texts(data, "search", where), _texts(data, "heldout", where), validation, where)


def load_gold_set(path: str | Path) -> GoldSet:
    """Read a gold set; errors name the file and field."""
    data = _read_yaml(path)
    where = Path(path).name
    _check_keys(data, ("name", "description", "keywords", *SPLITS, "negative"), where)
    return GoldSet(
        name=str(data.get("name", Path(path).stem)),
        passages=_split(data, where),
        keywords=_texts(data, "keywords", where, required=False),
        negative=_texts(data, "negative", where, required=False),
    )
