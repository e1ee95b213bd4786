"""`HandlerThreads`: the daemon threads that run sync handlers.

Not a `ThreadPoolExecutor`: Python joins that pool's threads at exit, so one sync handler stuck
in a system call would keep a stopped worker's process alive for ever. These threads are
daemons; a worker that has given the stuck job back can exit. Each call reports when its
thread starts running it (a sync handler's time limit starts then, not while it waits), and a
call whose caller gave up (timed out, cancelled) still counts as busy until its thread
returns, so the worker does not start more handlers than it has threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["HandlerThreads"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Call:
    function: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[bool, Any]]
    on_start: Callable[[], None]
    abandoned: bool = False


class HandlerThreads:
    """Up to `size` daemon threads, started as calls need them."""

    def __init__(
        self, size: int, *, name: str = "polyqueue", on_released: Callable[[], None] = lambda: None
    ) -> None:
        self._size = size
        self._name = name
        self._on_released = on_released
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = 0  # calls submitted and not yet returned by their thread
        self._abandoned = 0  # calls whose caller gave up while their thread still runs them

    @property
    def abandoned(self) -> int:
        """Threads still running a call whose caller stopped waiting (a timed-out handler)."""
        return self._abandoned

    async def run(
        self, function: Callable[..., Any], *args: Any, on_start: Callable[[], None]
    ) -> Any:
        """Run `function(*args)` on a thread, in a copy of the caller's context; `on_start`
        is called on the event loop when the thread begins. Whatever the function raises,
        `BaseException`s included, is raised here."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = _Call(lambda: context.run(function, *args), loop, loop.create_future(), on_start)
        self._submit(call)
        try:
            ok, value = await asyncio.shield(call.future)
        except asyncio.CancelledError:
            if not call.future.done():
                call.abandoned = True
                self._abandoned += 1
            raise
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Let idle threads exit; busy ones finish their call first (they are daemons: a
        stuck one never holds up the process's exit)."""
        for _ in self._threads:
            self._calls.put(None)

    def _submit(self, call: _Call) -> None:
        with self._lock:
            self._busy += 1
            spawn = self._busy > len(self._threads) and len(self._threads) < self._size
        if spawn:
            thread = threading.Thread(
                target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._calls.put(call)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call.loop.call_soon_threadsafe(_started, call)
            except RuntimeError:  # the loop is closed: the worker is gone
                return
            outcome: tuple[bool, Any]
            if call.abandoned:  # its caller gave up before it started: do not start it
                outcome = (False, asyncio.CancelledError())
            else:
                try:
                    outcome = (True, call.function())
                except BaseException as exc:  # handed to the caller, raised there
                    outcome = (False, exc)
            with self._lock:
                self._busy -= 1
            try:
                call.loop.call_soon_threadsafe(self._returned, call, outcome)
            except RuntimeError:
                return

    def _returned(self, call: _Call, outcome: tuple[bool, Any]) -> None:
        """On the loop: hand the outcome over, or free the slot of an abandoned call."""
        if call.abandoned:
            self._abandoned -= 1
            self._on_released()
        elif not call.future.done():
            call.future.set_result(outcome)


def _started(call: _Call) -> None:
    if call.abandoned or call.future.done():
        return
    try:
        call.on_start()
    except Exception:
        log.exception("a sync handler's start callback failed")
