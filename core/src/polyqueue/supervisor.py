"""`Supervisor`: `polyqueue worker --processes N`, N worker processes kept running.

Each worker process is `polyqueue worker APP ...` again, started in a session of its own so
that a terminal's Ctrl-C reaches only the supervisor, which passes SIGTERM and SIGINT on to
every process: each stops gracefully (running jobs finish within the grace period; a second
signal skips it, as for one worker). A process that exits while the supervisor is not
stopping is started again after a backoff that grows while processes keep dying young and
starts over once one has lived `STEADY_SECONDS`; in `--burst` mode a process that exits 0
is done. Process 0 alone takes part in maintenance (the others run with maintenance off):
one leader candidate per host instead of N; the advisory lock still picks one across
hosts. A worker process whose supervisor died (SIGKILL) notices within a second and stops
gracefully (`watch_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyqueue.backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["STEADY_SECONDS", "Supervisor", "watch_parent"]

log = logging.getLogger("polyqueue.supervisor")

STEADY_SECONDS = 30.0
"""A process that lived this long died of something new: its restart backoff starts over."""
FORWARDED = (signal.SIGTERM, signal.SIGINT)
PARENT_POLL_SECONDS = 1.0


@dataclass(slots=True)
class _Slot:
    """One of the N places: the process in it now, and its backoff."""

    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))


class Supervisor:
    """Runs process `command(index)` in each of `processes` slots until stopped; see the
    module docstring."""

    def __init__(
        self, command: Callable[[int], list[str]], processes: int, *, burst: bool = False
    ) -> None:
        self.command = command
        self._slots = [_Slot(index) for index in range(processes)]
        self._burst = burst
        self._stopping = asyncio.Event()
        self._failed = False

    async def run(self) -> int:
        """Supervise until every process has stopped; 0 if all stopped cleanly, else 1."""
        loop = asyncio.get_running_loop()
        for signum in FORWARDED:
            loop.add_signal_handler(signum, self.stop, signum)
        try:
            await asyncio.gather(*(self._keep(slot) for slot in self._slots))
        finally:
            for signum in FORWARDED:
                loop.remove_signal_handler(signum)
        return 1 if self._failed else 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Pass `signum` on to every process and start no more of them."""
        name = signal.Signals(signum).name
        log.info("supervisor: %s, stopping %d worker processes", name, len(self.pids))
        self._stopping.set()
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signum)

    @property
    def pids(self) -> list[int]:
        """The pids of the worker processes running now, by slot."""
        return [s.process.pid for s in self._slots if s.process and s.process.returncode is None]

    @property
    def restarts(self) -> int:
        """Processes started again after one died, so far."""
        return sum(slot.restarts for slot in self._slots)

    async def _keep(self, slot: _Slot) -> None:
        """Keep `slot` filled until the supervisor stops (in burst mode: until a clean exit)."""
        while not self._stopping.is_set():
            code = await self._run_once(slot)
            if self._stopping.is_set() or (self._burst and code == 0):
                self._failed |= code != 0
                return
            lived = time.monotonic() - slot.started
            if lived >= STEADY_SECONDS:
                slot.backoff.reset()
            delay = slot.backoff.next_delay()
            log.warning(
                "worker process %d (pid %s) exited with %s after %.1fs; starting another in %.1fs",
                slot.index,
                slot.process.pid if slot.process else "?",
                _describe(code),
                lived,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                slot.restarts += 1

    async def _run_once(self, slot: _Slot) -> int:
        slot.process = await asyncio.create_subprocess_exec(
            *self.command(slot.index), start_new_session=True
        )
        slot.started = time.monotonic()
        log.info("worker process %d started (pid %d)", slot.index, slot.process.pid)
        if self._stopping.is_set():  # a signal came while it was starting
            with contextlib.suppress(ProcessLookupError):
                slot.process.send_signal(signal.SIGTERM)
        return await slot.process.wait()


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


def watch_parent() -> None:
    """In a supervised worker process: SIGTERM ourselves once the supervisor is gone (its
    pid is no longer our parent), so that no worker outlives it unsupervised."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        log.warning("the supervisor is gone: stopping this worker process")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="polyqueue-parent-watch", daemon=True).start()
