from __future__ import annotations

from pathlib import Path

import pytest

from objectives.gold import load_gold_set, load_split

GOLD_DIR = Path(__file__).parents[1] / "configs" / "gold"
TOPICS = ["weddings", "love", "anger", "calm", "food", "constitution"]


@pytest.mark.parametrize("topic", TOPICS)
def test_shipped_gold_sets_load_and_split_disjointly(topic: str) -> None:
    gold = load_gold_set(GOLD_DIR / f"{topic}.yaml")
    assert gold.name == topic and len(gold.passages.search) >= 4 and len(gold.passages.heldout) >= 3
    assert not set(gold.passages.search) & set(gold.passages.heldout)
    assert gold.keywords


@pytest.mark.parametrize("name", ["prompts", "neutral", "off_target"])
def test_shipped_splits(name: str) -> None:
    split = load_split(GOLD_DIR / f"{name}.yaml")
    assert split.search and split.heldout and not set(split.search) & set(split.heldout)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"search: []\nheldout: [a]\n", "search is empty"),
        (b"heldout: [a]\n", "missing field 'search'"),
        (b"search: [a]\nheldout: [a]\npassages: []\n", "unknown field 'passages'"),
        (b"search: [a, '  ']\nheldout: [b]\n", "blank entry"),
        (b"search: [a]\nheldout: 3\n", "heldout: expected a list of strings"),
        (b"search: [\xff\xfe]\n", "not UTF-8"),
        (b"- a\n", "expected a mapping"),
    ],
)
def test_bad_gold_files(tmp_path: Path, content: bytes, needle: str) -> None:
    p = tmp_path / "g.yaml"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=needle):
        load_gold_set(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gold_set(tmp_path / "nope.yaml")
