from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from steering.model import SteerableModel  # noqa: E402
from steering.testing import tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny() -> SteerableModel:
    """A 2-layer d=32 random GPT-2 (in memory, shared by the session; tests must not mutate it)."""
    return tiny_model()
