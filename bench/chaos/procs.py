"""The worker and producer processes of a chaos run, their proxies and their event logs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from polyqueue.testing.proxy import FaultProxy

__all__ = ["Event", "Process", "read_events"]

APP = Path(__file__).with_name("app.py")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Event:
    """One line of an event log (see app.py)."""

    at: float
    kind: str
    fields: tuple[int, ...]


def read_events(path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """The complete lines of `path` from byte `offset`, and the offset after them."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].decode().splitlines():
        at, kind, *rest = line.split()
        events.append(
            Event(float(at), kind, tuple(int(x) for x in rest if x.lstrip("-").isdigit()))
        )
    return events, offset + end


@dataclass
class Process:
    """One worker or producer process: its own proxies to PostgreSQL and to the broker."""

    role: str  # "worker" | "producer"
    index: int
    folder: Path
    pg_proxy: FaultProxy
    broker_proxy: FaultProxy | None
    process: asyncio.subprocess.Process | None = None
    killed: bool = False  # by the runner: not a death
    started_at: float = 0.0
    ended_at: float | None = None
    events: list[Event] = field(default_factory=list)
    _offset: int = 0

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def events_path(self) -> Path:
        return self.folder / f"{self.name}.events"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def proxies(self) -> list[FaultProxy]:
        return [p for p in (self.pg_proxy, self.broker_proxy) if p is not None]

    async def spawn(self, env: Mapping[str, str]) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # not bench/chaos/ on sys.path: its modules would shadow others
                str(APP),
                self.role,
                env={**env, "CHAOS_EVENTS": str(self.events_path)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log if self.role == "worker" else asyncio.subprocess.PIPE,
                stderr=log,
            )
        self.started_at = time.time()
        if self.role == "producer":
            await self._ready()

    async def _ready(self) -> None:
        assert self.process is not None  # noqa: S101
        assert self.process.stdout is not None  # noqa: S101
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} exited at start ({code}); see {self.log_path}")

    def poll_events(self) -> list[Event]:
        """Read the events logged since the last call; return them (also kept in `events`)."""
        new, self._offset = read_events(self.events_path, self._offset)
        self.events += new
        return new

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None  # noqa: S101
            self.process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL (the runner's doing, not a death) and reap."""
        self.killed = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        await self.wait()

    async def wait(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """Reap the process; None if it did not exit within `timeout`."""
        if self.process is None:
            return None
        try:
            async with asyncio.timeout(timeout):
                code = await self.process.wait()
        except TimeoutError:
            return None
        if self.ended_at is None:
            self.ended_at = time.time()
        return code

    async def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL after the bound. Its exit code, or None
        when it had to be killed."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        code = await self.wait()
        if code is None:
            await self.kill()
        self.killed = True
        return code

    def in_flight(self) -> dict[int, float]:
        """Jobs whose handler started in this process and has not ended: when each will."""
        running: dict[int, float] = {}
        for event in self.events:
            if event.kind == "start":
                running[event.fields[0]] = event.at + event.fields[3] / 1000
            elif event.kind in {"return", "raise", "cancel"}:
                running.pop(event.fields[0], None)
        return running

    def started_since(self, moment: float) -> bool:
        return any(e.kind == "start" and e.at >= moment for e in self.events)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


def worker_environment(base: Mapping[str, str]) -> dict[str, str]:
    """`base` without any `POLYQUEUE_*` variable of the caller's."""
    return {k: v for k, v in base.items() if not k.startswith("POLYQUEUE_")} | {
        "PYTHONUNBUFFERED": "1"
    }
