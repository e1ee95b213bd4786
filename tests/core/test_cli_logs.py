"""What `polyqueue worker` logs when jobs fail: an expected `TerminalError` is one WARNING line;
an unexpected exception is an ERROR with a traceback of the user's frames only; JSON lines
carry it in `exception`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from polyqueue import Polyqueue

POLYQUEUE = Path(sys.executable).with_name("polyqueue")
TASKS = textwrap.dedent(
    """
    from pydantic import BaseModel
    from polyqueue import Polyqueue, TerminalError

    app = Polyqueue(retry_backoff_base=0)

    class Order(BaseModel):
        n: int

    @app.register("logs.refuse")
    async def refuse(payload: Order) -> None:
        raise TerminalError(f"order {payload.n} is not payable")

    @app.register("logs.crash")
    async def crash(payload: Order) -> None:
        return divide(payload.n)

    def divide(n: int) -> None:
        n / 0
    """
)


class Order(BaseModel):
    n: int


async def _never_run(payload: Order) -> None:
    """The producer's side of the handlers: it only enqueues."""


async def run_worker(url: str, project: Path, log_format: str) -> list[str]:
    """Enqueue one job of each handler, run `polyqueue worker --burst`, return its log."""
    (project / "tasks.py").write_text(TASKS)
    producer = Polyqueue(database_url=url)
    producer.register("logs.refuse")(_never_run)
    producer.register("logs.crash", max_attempts=2)(_never_run)  # the stored limit is this one
    async with producer:
        for name in ("logs.refuse", "logs.crash"):
            await producer.enqueue(name, Order(n=7))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    env |= {"POLYQUEUE_DATABASE_URL": url, "POLYQUEUE_LOG_FORMAT": log_format}
    result = subprocess.run(
        [str(POLYQUEUE), "worker", "tasks:app", "--burst"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


async def test_text_logs(clean_database: str, tmp_path: Path) -> None:
    lines = await run_worker(clean_database, tmp_path, "text")
    text = "\n".join(lines)

    (refused,) = [line for line in lines if "TerminalError" in line]
    assert " WARNING polyqueue.jobs: failed in " in refused
    assert "for good: TerminalError: order 7 is not payable [job_id=" in refused
    assert text.count("Traceback") == 2  # the crash's retry and its final failure, not the refusal
    (final,) = [line for line in lines if "for good: ZeroDivisionError" in line]
    assert " ERROR polyqueue.jobs: " in final
    after = text.split(final, 1)[1]
    assert "in divide\n    n / 0" in after
    assert "polyqueue/executor.py" not in text
    assert "polyqueue/middleware.py" not in text
    assert "    n / 0" in after


async def test_json_logs_carry_the_traceback_in_exception(
    clean_database: str, tmp_path: Path
) -> None:
    entries = [json.loads(line) for line in await run_worker(clean_database, tmp_path, "json")]
    failures = {e["message"].split(": ", 1)[1]: e for e in entries if "for good" in e["message"]}

    refused = failures["TerminalError: order 7 is not payable"]
    assert refused["level"] == "warning"
    assert "exception" not in refused
    crashed = failures["ZeroDivisionError: division by zero"]
    assert crashed["level"] == "error"
    assert crashed["exception"].startswith("Traceback (most recent call last):")
    assert "in divide" in crashed["exception"]
    assert "polyqueue/executor.py" not in crashed["exception"]
    retried = [e for e in entries if "retrying in" in e["message"]]
    assert retried[0]["level"] == "warning"
    assert "in divide" in retried[0]["exception"]


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYQUEUE_LOG_FORMAT", raising=False)
