"""The examples of docs/examples, importable by name, and the environment to run them in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture(autouse=True, scope="session")
def _examples_importable() -> None:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))


def example_env(database_url: str) -> dict[str, str]:
    """A reader's shell: .venv's bin first on PATH, only our database among POLYQUEUE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    env["POLYQUEUE_DATABASE_URL"] = database_url
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
