"""`bench/chaos.py --quick`: one cycle of every fault under load, per backend, must pass.

The runner starts its own servers and processes and exits 1 if a job was lost, a job has two
outcomes, a worker died or stalled, or throughput never came back. Recovery times are in its
JSON but never asserted: they are figures, not guarantees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "bench" / "chaos.py"
RUN_TIMEOUT_SECONDS = 420  # about a minute per backend on 2 CPUs; this bounds a hang


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
@pytest.mark.parametrize("backend", ["postgres", "redis", "pgmq", "sqs"])
def test_quick_chaos_run(backend: str, tmp_path: Path) -> None:
    if backend == "sqs":
        pytest.importorskip("moto.server")
    figures = tmp_path / "chaos.json"
    command = [sys.executable, str(RUNNER), "--quick", "--backends", backend]
    command += ["--json", str(figures), "--keep", str(tmp_path / "logs")]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
    )
    output = f"{run.stdout[-8000:]}\n--- stderr ---\n{run.stderr[-8000:]}"
    assert run.returncode == 0, output
    report = json.loads(figures.read_text())
    assert report["failures"] == [], output
    faults = report[backend]["faults"]
    for name, row in faults.items():
        if name != "(steady load)":
            assert row["injected"] == 1, (name, output)
            assert not any(n.startswith("injection failed") for n in row["notes"]), (name, row)
        assert row["lost"] == [], (name, row)
        assert row["two_outcomes"] == [], (name, row)
