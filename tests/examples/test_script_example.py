"""docs/examples/script.py: a plain script enqueues; `polyqueue worker --burst` runs the jobs
and exits; `--wait` waits for a worker's results."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import asyncpg

from conftest import EXAMPLES, example_env

TIMEOUT = 60


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


async def statuses(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT status::text FROM polyqueue.jobs ORDER BY id")
    finally:
        await connection.close()
    return [row["status"] for row in rows]


async def test_enqueue_from_a_script_then_a_burst_worker_runs_all_and_exits(
    polyqueue_test_settings: dict[str, Any],
) -> None:
    url = polyqueue_test_settings["database_url"]
    env = example_env(url)
    enqueued = run([sys.executable, "script.py", "3"], env)
    assert enqueued.returncode == 0, enqueued.stderr
    assert enqueued.stdout.startswith("enqueued ")
    assert await statuses(url) == ["queued"] * 3

    burst = run(["polyqueue", "worker", "script:queue", "--burst"], env)
    assert burst.returncode == 0, burst.stderr
    assert await statuses(url) == ["succeeded"] * 3

    again = run(["polyqueue", "worker", "script:queue", "--burst"], env)  # nothing to do
    assert again.returncode == 0, again.stderr


async def test_the_script_waits_for_a_workers_results(
    polyqueue_test_settings: dict[str, Any],
) -> None:
    env = example_env(polyqueue_test_settings["database_url"])
    worker = subprocess.Popen(
        ["polyqueue", "worker", "script:queue"],
        cwd=EXAMPLES,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        waited = run([sys.executable, "script.py", "2", "--wait"], env)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=TIMEOUT)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.splitlines()[1:] == ["invoice 0 sent", "invoice 1 sent"]
