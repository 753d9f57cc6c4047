"""Atomic writes under a forced collision: two writers of one file, interleaved deterministically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from search.outputs import write_text
from steering import SteeringVector
from steering.atomic import atomic_write_text


def _interleave(monkeypatch: pytest.MonkeyPatch, second_writer) -> None:
    """The first rename waits while a second writer writes the same file in full (what two workers that
    finish trials together do); later renames go through."""
    real, fired = os.replace, []

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if not fired:
            fired.append(True)
            second_writer()
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_two_writers_of_one_run_file_do_not_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "trials.csv"
    _interleave(monkeypatch, lambda: write_text(target, "worker B\n"))
    write_text(target, "worker A\n")  # a shared temporary name makes this rename fail (FileNotFoundError)
    assert target.read_text() == "worker A\n"  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv"]  # no temporary file left behind


def test_two_writers_of_one_vector_do_not_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = SteeringVector(torch.ones(1, 4), 1, {"who": "a"}), SteeringVector(torch.zeros(1, 4), 1, {"who": "b"})
    _interleave(monkeypatch, lambda: b.save(tmp_path / "best"))
    a.save(tmp_path / "best")
    back = SteeringVector.load(tmp_path / "best")
    assert back.metadata["who"] in {"a", "b"} and back.activations.shape == (1, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "best.json"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise Boom

    from steering.atomic import atomic_write

    with pytest.raises(Boom):
        atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]
