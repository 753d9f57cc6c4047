"""Trial parameter names, spelled once: the search space suggests them, the study enqueues and grids them,
the report plots them. A candidate's i-th addition (from 0) uses ``name(base, i)``: ``coeff``, ``coeff_2``...
"""

from __future__ import annotations

KIND = "kind"
INIT = "init"
PAIR = "pair"
LAYER = "layer"
COEFF = "coeff"
FRAC = "frac"
MASK = "mask"
POSITIONS = "positions"
LR = "lr"
STEPS = "steps"
NORM_BOUND = "norm_bound"
N_ADDITIONS = "n_additions"

LEARNED_COEFF = 1.0
"""A learned vector is applied with coefficient 1: its fitted values (and norm bound) are its strength."""


def name(base: str, index: int) -> str:
    """The parameter for addition ``index`` (0-based): ``layer``, ``layer_2``, ``layer_3``..."""
    return base if index == 0 else f"{base}_{index + 1}"
