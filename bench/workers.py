"""Worker subprocesses (`bench/worker_proc.py`) and the protocol to drive them.

A worker process prints one JSON line when it is ready (its app is open, its preload done),
waits for a `go` line on its stdin, then works until SIGTERM and prints one last JSON line
(its exit report, e.g. SQS call counts) as it exits. The `go` line is the start barrier:
several processes start consuming together, and CPU is read just before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procstat import read_stat, status_kb

if TYPE_CHECKING:
    from asyncio.subprocess import Process
    from collections.abc import AsyncIterator

__all__ = ["WorkerProcess", "worker_processes"]

WORKER_SCRIPT = Path(__file__).with_name("worker_proc.py")
READY_TIMEOUT_SECONDS = 300.0  # interpreter start, imports, pool, and a preload of 20,000 jobs
STOP_TIMEOUT_SECONDS = 60.0


class WorkerProcess:
    """One `worker_proc.py` subprocess."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self.ready: dict[str, Any] = {}
        """Its first line: `{"ready": <time.time()>, "enqueue_seconds": <its preload's>}`."""
        self.exit_report: dict[str, Any] = {}
        """Its last line, once stopped."""

    @classmethod
    async def spawn(
        cls,
        url: str,
        backend: str,
        *,
        concurrency: int,
        preload: int = 0,
        batch: int = 1000,
        profile: Path | None = None,
    ) -> WorkerProcess:
        """Start the process (it is not ready yet: see `wait_ready`)."""
        args = [str(WORKER_SCRIPT), url, backend, "--concurrency", str(concurrency)]
        args += ["--preload", str(preload), "--batch", str(batch)]
        args += ["--profile", str(profile)] if profile else []
        pipe = asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=pipe, stdout=pipe
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait_ready(self) -> None:
        """Read the ready line (the process has opened its app and done its preload)."""
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            line = await self._stdout().readline()
        if not line:
            raise RuntimeError(f"a worker process exited early (code {await self._process.wait()})")
        self.ready = json.loads(line)

    async def go(self) -> None:
        """Release it: it starts its worker now."""
        assert self._process.stdin is not None  # noqa: S101  (created with stdin=PIPE)
        self._process.stdin.write(b"go\n")
        await self._process.stdin.drain()

    def cpu_seconds(self) -> float:
        """Its CPU so far (it has no children); 0 if it is gone."""
        stat = read_stat(self.pid)
        return stat.own_cpu if stat is not None else 0.0

    def peak_rss_kb(self) -> int | None:
        """Its peak resident memory so far (`VmHWM`)."""
        return status_kb(self.pid, "VmHWM")

    def dump_tasks(self) -> None:
        """Ask it to print every asyncio task's stack to stderr."""
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGUSR1)

    async def stop(self) -> None:
        """SIGTERM, read its exit report, reap it; kill it if it does not exit in time."""
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                rest = await self._stdout().read()
                await self._process.wait()
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
            return
        lines = rest.decode().strip().splitlines()
        if lines:
            self.exit_report = json.loads(lines[-1])

    def _stdout(self) -> asyncio.StreamReader:
        assert self._process.stdout is not None  # noqa: S101  (created with stdout=PIPE)
        return self._process.stdout


@contextlib.asynccontextmanager
async def worker_processes(
    count: int,
    url: str,
    backend: str,
    *,
    concurrency: int,
    preload: int = 0,
    batch: int = 1000,
    profile: Path | None = None,
) -> AsyncIterator[list[WorkerProcess]]:
    """`count` worker processes, all ready (none released yet); all stopped at the end."""
    workers: list[WorkerProcess] = []
    try:
        for _ in range(count):
            worker = await WorkerProcess.spawn(
                url, backend, concurrency=concurrency, preload=preload, batch=batch, profile=profile
            )
            workers.append(worker)
        await asyncio.gather(*(worker.wait_ready() for worker in workers))
        yield workers
    finally:
        await asyncio.gather(*(worker.stop() for worker in workers))
