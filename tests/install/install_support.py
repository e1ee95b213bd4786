"""Helpers of the install tests: paths, the fresh venv, pip without the machine's config."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Installed:
    """A fresh venv with `polyqueue[redis]` installed from the wheels alone."""

    root: Path
    wheels: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def polyqueue(self) -> Path:
        return self.root / "bin" / "polyqueue"


def offline_pip_env() -> dict[str, str]:
    """The environment without the machine's pip configuration: only the links we pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    """Run the dev venv's pip; fail the test with pip's own output if it fails."""
    done = subprocess.run(
        [str(DEV_PYTHON), "-m", "pip", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}\n{done.stdout}\n{done.stderr}"
