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


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the throwaway PostgreSQL database that tests/with_postgres.sh starts (`make test` runs through it).

    postgresql://steersearch:<password>@127.0.0.1:<port>/steersearch_test, from STEERSEARCH_TEST_POSTGRES.
    Without it the test skips, except under CI=true, where a missing server is a failure, not a silent skip.
    """
    url = os.environ.get("STEERSEARCH_TEST_POSTGRES", "")
    if not url:
        why = "STEERSEARCH_TEST_POSTGRES is not set: run the tests through tests/with_postgres.sh (as `make test` does)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI must run the postgres tests, not skip them)")
        pytest.skip(why)
    return url
