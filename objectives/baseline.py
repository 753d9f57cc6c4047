"""Compute a BERTScore rescaling baseline for an encoder, the way bert_score's shipped ones are made:
the mean P, R and F1 of unrelated sentence pairs, per layer.

bert_score averaged 1M random Common Crawl pairs. No such corpus is reachable here, so this uses the
project's own texts: every ordered pair of passages taken from *different* files of ``configs/gold/``
(different topics, neutral text, prompts). The shipped ``objectives/data/minilm-l6-baseline.csv`` was made
with the default arguments:

    python -m objectives.baseline --out objectives/data/minilm-l6-baseline.csv

The CSV has bert_score's format (``LAYER,P,R,F``), so it also works as ``BERTScorer(baseline_path=...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from objectives.bertscore import BertScorer

GOLD_DIR = Path(__file__).parents[1] / "configs" / "gold"


def shipped_texts(gold_dir: Path = GOLD_DIR) -> dict[str, list[str]]:
    """Every passage of every file in ``gold_dir``, grouped by file."""
    groups = {}
    for f in sorted(gold_dir.glob("*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        groups[f.stem] = [t for key in ("search", "heldout") for t in data.get(key, [])]
    return groups


def baseline_rows(model_type: str | None, layers: list[int], groups: dict[str, list[str]]) -> list[list[float]]:
    texts = [t for g in groups.values() for t in g]
    group_of = [name for name, g in groups.items() for _ in g]
    rows = []
    for layer in layers:
        scorer = BertScorer(model_type=model_type, num_layers=layer)
        m = scorer.score_matrix(texts, scorer.references(texts))  # [N, N, 3]
        unrelated = [(i, j) for i in range(len(texts)) for j in range(len(texts)) if group_of[i] != group_of[j]]
        ii, jj = zip(*unrelated, strict=True)
        mean = m[list(ii), list(jj)].mean(dim=0)
        rows.append([float(layer), *mean.tolist()])
        print(f"layer {layer}: P {mean[0]:.4f} R {mean[1]:.4f} F {mean[2]:.4f} over {len(unrelated)} pairs")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="encoder name or path (default: shipped MiniLM)")
    parser.add_argument("--layers", type=int, default=6, help="compute layers 0..N")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = baseline_rows(args.model, list(range(args.layers + 1)), shipped_texts())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("LAYER,P,R,F\n" + "".join(f"{int(r[0])},{r[1]:.6f},{r[2]:.6f},{r[3]:.6f}\n" for r in rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
