"""Sentence-embedding similarity to the gold passages: an independent second target metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from objectives.bertscore import default_model_path


class EmbeddingSimilarity:
    """Mean cosine between each completion and the gold passages (sentence-transformers, loaded once).

    Blank completions score 0.

    Example:
        >>> sim = EmbeddingSimilarity()
        >>> gold = sim.references(["The bride and groom said their vows."])
        >>> sim.score(["They got married in June.", "It rained."], gold)   # tensor of 2 cosines
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        path = str(model_path) if model_path is not None else default_model_path()
        if model_path is not None and not Path(path).exists():
            raise FileNotFoundError(f"embedding model path {path!r} does not exist")
        self._model = SentenceTransformer(path, device=device)

    def _embed(self, texts: Sequence[str]) -> Tensor:
        return self._model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True).cpu()

    def references(self, passages: Sequence[str]) -> Tensor:
        """Unit embeddings ``[R, d]`` of the gold passages, computed once per gold set."""
        if not passages:
            raise ValueError("gold set is empty: embedding similarity needs at least one passage")
        return self._embed(passages)

    @torch.inference_mode()
    def score(self, completions: Sequence[str], refs: Tensor) -> Tensor:
        """``[N]``: each completion's mean cosine to the reference passages."""
        if not completions:
            raise ValueError("no completions to score")
        keep = [i for i, c in enumerate(completions) if c.strip()]
        out = torch.zeros(len(completions))
        if keep:
            emb = self._embed([completions[i] for i in keep])
            out[keep] = (emb @ refs.T).mean(dim=1)
        return out
