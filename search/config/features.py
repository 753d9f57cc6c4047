"""The config of the search's features (multi-fidelity rungs, adversarial pairs, distillation, length vs
strength): plain typed specs that the experiment config holds and each feature imports from here, so the
config sits below the features it configures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from search.config.space import FitChoice
from steering import Positions


@dataclass(frozen=True)
class MutationConfig:
    """One GCG run: ``steps`` rounds of ``candidates`` single-token substitutions drawn from the ``top_k``
    gradient choices per position; ``readable`` restricts substitutions to plain word tokens."""

    steps: int = 12
    top_k: int = 16
    candidates: int = 32
    readable: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.top_k < 1 or self.candidates < 1:
            raise ValueError("steps, top_k and candidates must be >= 1")


@dataclass(frozen=True)
class AdversarialSpec:
    """``gcg`` settings (restart r runs with seed ``gcg.seed + r``), ``restarts`` per baseline pair, and how
    many gold rows the proxy scores per candidate."""

    gcg: MutationConfig = field(default_factory=MutationConfig)
    restarts: int = 1
    rows: int = 16

    def __post_init__(self) -> None:
        if self.restarts < 1 or self.rows < 1:
            raise ValueError("restarts and rows must be >= 1")

    def mutation(self, restart: int) -> MutationConfig:
        return dataclasses.replace(self.gcg, seed=self.gcg.seed + restart)


@dataclass(frozen=True)
class TargetSpec:
    """A vector to distill: a pair's ActAdd vector times ``coeff`` added at ``positions`` (``front``, ActAdd's;
    ``all``/``from:K`` add the position-summed vector, the mode a paragraph-long pair needs), or a learned vector
    fitted with ``learned`` on the search split (added at its fit positions, coefficient 1). ``match`` overrides
    ``distill.match`` for this target (``per_position`` only for a pair at the front positions)."""

    layer: int
    pair: tuple[str, str] | None = None
    coeff: float = 1.0
    learned: FitChoice | None = None
    positions: str = "front"
    match: str | None = None

    def __post_init__(self) -> None:
        if (self.pair is None) == (self.learned is None):
            raise ValueError("a distillation target is either a pair or a learned vector (give exactly one)")
        Positions.parse(self.positions)
        if self.learned is not None and self.positions != "front":
            raise ValueError("a learned distillation target is added at its fit's positions (learned.positions)")
        if self.match is not None:
            _check_match(self.match)
            if self.match == "per_position" and (self.pair is None or self.positions != "front"):
                raise ValueError(
                    "match: per_position needs a pair target at front positions (elsewhere the summed vector is added)"
                )

    def matching(self, default: str) -> str:
        """The match this target uses: its own, else ``default``; ``summed`` wherever the vector added is the
        position-summed one (a learned vector, a pair at all/from:K), where placement does not exist."""
        if self.pair is None or self.positions != "front":
            return "summed"
        return self.match or default


MATCHES = ("summed", "per_position")


def _check_match(match: str) -> None:
    if match not in MATCHES:
        raise ValueError(f"match must be one of {', '.join(MATCHES)}, got {match!r}")


@dataclass(frozen=True)
class DistillSpec:
    """``match``: how a short pair is matched to a front-position pair target: ``summed`` (cosine of
    position-summed vectors) or ``per_position`` (cosine of the short pair's positions, flattened, to the target
    compressed into as many positions in order; ``steering.tokens.positional_cosine_score``).

    ``coeff_scales`` multiply each short pair's projection coefficient; ``coeffs`` are absolute coefficients
    tried as well (where the projection coefficient is far below what steers a model, as on SmolLM2, where a
    token's vector is much longer than a learned target). The best of all on the search split is used."""

    targets: tuple[TargetSpec, ...]
    max_tokens: int = 3
    coeff_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    coeffs: tuple[float, ...] = ()
    shortlist: int = 128
    gcg: MutationConfig = field(default_factory=lambda: MutationConfig(steps=16, top_k=32, candidates=64))
    match: str = "summed"

    def __post_init__(self) -> None:
        _check_match(self.match)
        if not self.targets:
            raise ValueError("distill needs at least one target")
        if self.max_tokens < 1 or self.shortlist < 1:
            raise ValueError("max_tokens and shortlist must be >= 1")
        if not self.coeff_scales or min(self.coeff_scales) <= 0:
            raise ValueError("coeff_scales needs positive multipliers")
        if any(c <= 0 for c in self.coeffs):
            raise ValueError(f"distill.coeffs must be positive, got {list(self.coeffs)}")


@dataclass(frozen=True)
class LengthSpec:
    """``truncate``: pairs whose word-level prefixes (1, 2, ... words per side) are measured; ``pairs``:
    further pairs measured as given (paraphrases); ``coeff``: the fixed coefficient; ``coeffs``: the grid
    for the best coefficient."""

    layer: int
    coeff: float
    coeffs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    truncate: tuple[tuple[str, str], ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    positions: str = "front"

    def __post_init__(self) -> None:
        if not self.truncate and not self.pairs:
            raise ValueError("length needs pairs to truncate or pairs to measure")
        if not self.coeffs:
            raise ValueError("coeffs needs at least one value")
        Positions.parse(self.positions)


@dataclass(frozen=True)
class FidelitySpec:
    """Multi-fidelity: what each rung of a trial spends; after every rung but the last the pruner may stop it.

    ``rungs``: cumulative samples per prompt at each rung. ``prompts`` (optional, one entry per rung):
    cumulative search prompts at each rung, in a fixed shuffled order of the search split (seeded by the
    generation seed), so a first rung on a few prompts already sees every style; the last entry is the
    full budget. Later rungs extend earlier ones exactly (the same completions a single full call gives)."""

    rungs: tuple[int, ...] = (8,)
    prompts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ValueError("rungs must list at least one sample count")
        if self.rungs[0] < 1:
            raise ValueError("rungs must be >= 1")
        steps = list(zip(self.rungs, self.prompts or [0] * len(self.rungs), strict=False))
        if self.prompts is not None:
            if len(self.prompts) != len(self.rungs):
                raise ValueError(
                    f"fidelity.prompts needs one entry per rung ({len(self.rungs)}), got {list(self.prompts)}"
                )
            if self.prompts[0] < 1:
                raise ValueError("fidelity.prompts must be >= 1")
        if any(b[0] < a[0] or b[1] < a[1] or b == a for a, b in zip(steps, steps[1:], strict=False)):
            what = "(samples, prompts) pairs" if self.prompts is not None else "sample counts"
            raise ValueError(f"rungs must be increasing {what}, got {list(self.rungs)} / {self.prompts}")

    def budget(self, n_prompts: int) -> list[tuple[int, int]]:
        """``(prompts, samples per prompt)`` at each rung, for a search split of ``n_prompts`` prompts."""
        if self.prompts is not None and self.prompts[-1] > n_prompts:
            raise ValueError(f"fidelity.prompts asks for {self.prompts[-1]} prompts; the search split has {n_prompts}")
        counts = self.prompts or (n_prompts,) * len(self.rungs)
        return list(zip(counts, self.rungs, strict=True))


@dataclass(frozen=True)
class OvershootSpec:
    """The frac × coefficient grid of one pair (``steersearch analyze``): at each of ``layers``, every
    ``coeffs`` × ``fracs`` cell with the first ``frac`` of the residual dimensions (ActAdd's slice) and, as a
    control, random dimension subsets of the same size (one per ``mask_seeds`` entry; at frac 1 both masks are
    every dimension, so that cell is measured once). Each cell: ``samples`` completions of each of the first
    ``prompts`` prompts of ``split`` (all of them when null), the same prompts and seeds in every cell, so any
    two cells are paired. ``reference``/``fracs_compared``: the paired test is each compared frac against
    ``reference`` at every coefficient."""

    layers: tuple[int, ...]
    coeffs: tuple[float, ...]
    pair: tuple[str, str] = (" weddings", "")
    fracs: tuple[float, ...] = (0.5, 0.7, 0.85, 1.0)
    mask_seeds: tuple[int, ...] = (0, 1)
    prompts: int | None = None
    samples: int = 2
    split: str = "search"
    positions: str = "front"
    reference: float = 1.0
    compared: tuple[float, ...] = (0.7,)

    def __post_init__(self) -> None:
        if not self.layers or not self.coeffs or not self.fracs:
            raise ValueError("overshoot needs layers, coeffs and fracs")
        if any(not 0 < f <= 1 for f in self.fracs):
            raise ValueError(f"overshoot.fracs must be in (0, 1], got {list(self.fracs)}")
        if any(not c > 0 for c in self.coeffs):
            raise ValueError(f"overshoot.coeffs must be > 0, got {list(self.coeffs)}")
        if self.reference not in self.fracs or not set(self.compared) <= set(self.fracs):
            raise ValueError("overshoot.reference and overshoot.compared must be among overshoot.fracs")
        if self.samples < 1 or (self.prompts is not None and self.prompts < 1):
            raise ValueError("overshoot.samples and overshoot.prompts must be >= 1")
        if self.split not in ("search", "validation", "heldout"):
            raise ValueError(f"overshoot.split must be search, validation or heldout, got {self.split!r}")
        Positions.parse(self.positions)
