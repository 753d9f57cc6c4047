"""Vectors of a study's candidates, each built once: pair vectors in memory, fitted vectors also on disk.

A fitted vector is saved under ``vectors/fitted/`` of the run as soon as it is fitted, keyed by a hash of
everything it depends on (model, layer, fit settings, starting pair, training rows). A resumed or
crashed-and-restarted run, and ``compare``, load it instead of fitting again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from search.config.space import FitChoice, LearnedSpec
from search.space import AdditionChoice, Pair
from steering import SteeringVector
from steering.fit import FitConfig, fit_vector
from steering.model import SteerableModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitter:
    """The training rows and fixed settings of every learned vector in a study."""

    promote: tuple[tuple[str, str], ...]
    suppress: tuple[tuple[str, str], ...] = ()
    spec: LearnedSpec = field(default_factory=LearnedSpec)

    def config(self, fit: FitChoice) -> FitConfig:
        s = self.spec
        return FitConfig(
            lr=fit.lr,
            steps=fit.steps,
            batch_size=s.batch_size,
            norm_bound=fit.norm_bound,
            norm_penalty=s.norm_penalty,
            suppress_weight=s.suppress_weight,
            target_loss=s.target_loss,
            positions=fit.positions,
            seed=s.seed,
        )

    def key(self, model: SteerableModel, choice: AdditionChoice) -> str:
        assert choice.fit is not None
        start = [choice.pair.a, choice.pair.b, choice.coeff] if choice.fit.init == "pair" and choice.pair else None
        blob = json.dumps(
            {
                "model": model.name,
                "layer": choice.layer,
                "fit": dataclasses.asdict(self.config(choice.fit)),
                "start": start,
                "promote": self.promote,
                "suppress": self.suppress,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


class VectorCache:
    """``get(model, choice)``: the vector an addition adds (before its coefficient), built once.

    Args:
        fitter: needed for learned candidates.
        directory: where fitted vectors are saved and looked up (``runs/<name>/vectors/fitted``).
    """

    def __init__(self, fitter: Fitter | None = None, directory: Path | None = None) -> None:
        self.fitter, self.directory = fitter, directory
        self._pairs: dict[tuple[str, str, int], SteeringVector] = {}
        self._fitted: dict[str, SteeringVector] = {}
        self.fits_run = 0

    def pair(self, model: SteerableModel, pair: Pair, layer: int) -> SteeringVector:
        key = (pair.a, pair.b, layer)
        if key not in self._pairs:
            self._pairs[key] = SteeringVector.from_pair(model, pair.a, pair.b, layer)
        return self._pairs[key]

    def get(self, model: SteerableModel, choice: AdditionChoice) -> SteeringVector:
        if choice.fit is None:
            assert choice.pair is not None
            return self.pair(model, choice.pair, choice.layer)
        if self.fitter is None:
            raise ValueError("a learned candidate needs training rows: build VectorCache with a Fitter")
        key = self.fitter.key(model, choice)
        if key not in self._fitted:
            self._fitted[key] = self._load(key) or self._fit(model, choice, key)
        return self._fitted[key]

    def _load(self, key: str) -> SteeringVector | None:
        if self.directory is None or not (self.directory / f"{key}.safetensors").exists():
            return None
        return SteeringVector.load(self.directory / key)

    def _fit(self, model: SteerableModel, choice: AdditionChoice, key: str) -> SteeringVector:
        assert self.fitter is not None and choice.fit is not None
        init = self.pair(model, choice.pair, choice.layer) if choice.fit.init == "pair" and choice.pair else None
        result = fit_vector(
            model,
            choice.layer,
            self.fitter.promote,
            suppress=self.fitter.suppress,
            config=self.fitter.config(choice.fit),
            init=init,
            init_coeff=choice.coeff if init is not None else 1.0,
        )
        self.fits_run += 1
        logger.info("fitted %s: loss %.3f -> %.3f", choice.describe(), result.losses[0], result.losses[-1])
        vec = dataclasses.replace(result.vector, metadata={**result.vector.metadata, "losses": result.losses})
        if self.directory is not None:
            vec.save(self.directory / key)  # written at once: a crash loses no finished fit
        return vec


def gold_rows(prompts: Sequence[str], passages: Sequence[str], *, max_rows: int = 64) -> tuple[tuple[str, str], ...]:
    """``(prompt, " " + passage)`` rows, evenly thinned to ``max_rows``: the teacher-forced training and
    proxy data (the same rows ``objectives.GoldLogLikelihood`` scores)."""
    from objectives.damage import GoldLogLikelihood

    return GoldLogLikelihood(prompts, passages, max_pairs=max_rows).pairs
