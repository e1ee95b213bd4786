"""Worker subprocesses for the fault tests: spawn, signal, kill, and read their logs."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).parent

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "maintenance_interval": 0.2,
    "scheduler_interval": 0.1,
    "lease_seconds": 2.0,
    "retry_backoff_base": 0.01,
    "retry_backoff_max": 0.05,
    "shutdown_grace_seconds": 5.0,
}
"""Settings under which the fault tests' faults resolve in seconds (workers in processes get
them as POLYQUEUE_* variables); no assertion depends on them being met in time."""


class WorkerProcess:
    """One `python <script>` worker process and its log file."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logged(self, pattern: str) -> bool:
        """Whether a line of the log matches `pattern` (a regular expression)."""
        return re.search(pattern, self.output(), re.MULTILINE) is not None

    async def exited(self, timeout: float = 30.0) -> int:
        async def gone() -> bool:
            return self.process.poll() is not None

        await eventually(gone, timeout)
        return self.process.returncode


class Processes:
    """Spawns worker processes of one script; every one is killed and reaped at the end."""

    def __init__(self, script: str, database_url: str, log_dir: Path) -> None:
        self.script = HERE / script
        self.database_url = database_url
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def spawn(self, **settings: Any) -> WorkerProcess:
        """Start a worker; `settings` become `POLYQUEUE_<NAME>` variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
        env["POLYQUEUE_DATABASE_URL"] = self.database_url
        env["POLYQUEUE_QUEUE_BACKEND"] = "postgres"
        env.update({f"POLYQUEUE_{k.upper()}": str(v) for k, v in settings.items()})
        log = self.log_dir / f"{self.script.stem}-{len(self.started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, str(self.script)],
                env=env,
                cwd=HERE,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log)
        self.started.append(worker)
        return worker

    def dump_logs(self) -> None:
        for worker in self.started:
            print(f"--- {worker.log} (pid {worker.pid}) ---\n{worker.output()}")  # noqa: T201

    def kill_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=30)


@contextlib.contextmanager
def worker_processes(script: str, database_url: str, log_dir: Path) -> Iterator[Processes]:
    """`Processes` for `script`; on a failure their logs are printed, and all are killed."""
    processes = Processes(script, database_url, log_dir)
    try:
        yield processes
    except BaseException:
        processes.dump_logs()
        raise
    finally:
        processes.kill_all()


def require_alive(*workers: WorkerProcess) -> None:
    """Fail at once (with the exit code) if a worker that should be running has exited."""
    for worker in workers:
        if not worker.alive:
            pytest.fail(f"worker {worker.pid} exited early with {worker.process.returncode}")
