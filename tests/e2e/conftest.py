"""Fixtures of the end-to-end tests (the app factory and database are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres", "none"])
def queue_backend(request: pytest.FixtureRequest) -> str:
    """Each built-in broker. `none` is in-process: producer and worker share one app."""
    return str(request.param)
