from __future__ import annotations

import pytest

from steering.model import SteerableModel
from steering.testing import tiny_model


@pytest.fixture(scope="session")
def tiny() -> SteerableModel:
    """A 2-layer d=32 random GPT-2 (in memory, shared by the session; tests must not mutate it)."""
    return tiny_model()
