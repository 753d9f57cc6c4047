"""steering: the model layer of steersearch (load, build vectors, hook, generate). No optuna here."""

from steering.generate import GenerationConfig, generate, generate_candidates
from steering.hooks import steer
from steering.intervention import Addition, MaskMode, PositionMode, Positions, Steering
from steering.model import EMBEDDED_MODEL_DIR, ModelLoadError, SteerableModel, load_model
from steering.vector import SteeringVector, resid_pre

__all__ = [
    "EMBEDDED_MODEL_DIR",
    "Addition",
    "GenerationConfig",
    "MaskMode",
    "ModelLoadError",
    "PositionMode",
    "Positions",
    "SteerableModel",
    "Steering",
    "SteeringVector",
    "generate",
    "generate_candidates",
    "load_model",
    "resid_pre",
    "steer",
]
