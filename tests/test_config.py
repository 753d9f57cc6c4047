from __future__ import annotations

from pathlib import Path

import pytest

from search.config import ConfigError, ExperimentConfig, load_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_when_empty(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")) == ExperimentConfig()


def test_values_are_typed(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "name: x\ngeneration:\n  top_p: 1\n  n: 4\nmodel:\n  dtype: float16\n"))
    assert cfg.generation.top_p == 1.0 and isinstance(cfg.generation.top_p, float)
    assert cfg.generation.n == 4 and cfg.model.dtype == "float16" and cfg.model.source is None


@pytest.mark.parametrize(
    "text,needle",
    [
        ("generaton: {}\n", "unknown field 'generaton'"),
        ("generation:\n  nn: 3\n", "generation: unknown field 'nn'; allowed: max_new_tokens"),
        ("generation:\n  n: three\n", "generation.n: expected int"),
        ("generation:\n  n: 0\n", "n=0"),
        ("model:\n  dtype: int8\n", "model.dtype: 'int8' is not allowed; allowed: float32"),
        ("model: 3\n", "model: expected a mapping"),
        ("- a\n", "config: expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    assert needle in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_non_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_objective_section_builds_typed_spec(tmp_path: Path) -> None:
    text = (
        "objective:\n  kind: scalar\n  terms:\n    - {metric: bertscore_f1, weight: 1}\n"
        "    - {metric: rep_rate, weight: -0.5}\n  constraints:\n    - {metric: ppl_ratio, max: 1.2}\n"
        "scorer:\n  num_layers: 4\n  idf: true\n"
    )
    cfg = load_config(_write(tmp_path, text))
    assert cfg.objective.terms[1].metric == "rep_rate" and cfg.objective.terms[1].weight == -0.5
    assert cfg.objective.constraints[0].max == 1.2 and cfg.scorer.num_layers == 4 and cfg.scorer.idf


@pytest.mark.parametrize(
    "text,needle",
    [
        ("objective:\n  terms:\n    - {metric: bleu}\n", "objective.terms[0]: unknown metric 'bleu'"),
        ("objective:\n  kind: pareto\n", "objective.kind: 'pareto' is not allowed; allowed: scalar, multi"),
        ("objective:\n  constraints:\n    - {metric: kl}\n", "needs max or min"),
        ("objective:\n  terms: bertscore_f1\n", "objective.terms: expected a list"),
        ("scorer:\n  num_layers: five\n", "scorer.num_layers: expected int"),
    ],
)
def test_objective_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    assert needle in str(exc.value)
