"""`LoopThread`: one event loop in a daemon thread, so that sync code can call async code.

The model is anyio's blocking portal: the loop is started once and every call is a coroutine
handed to it (`run_on`), so a call costs two thread switches, not the setup and teardown of an
event loop (what `asyncio.run` per call would cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

__all__ = ["LoopThread", "run_on"]

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT_SECONDS = 10.0


class LoopThread:
    """An event loop running `run_forever` in a daemon thread of its own, started on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; started by the first call."""
        with self._lock:
            if self._loop is None:
                self._loop = self._start()
            return self._loop

    @property
    def running(self) -> bool:
        """Whether the thread has been started and not stopped."""
        return self._loop is not None

    def in_loop_thread(self) -> bool:
        """Whether the caller is the loop's own thread (a blocking call there would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                _close(loop)

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        return loop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and block until it returns (or raises)."""
        return run_on(self.loop, coroutine)

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            log.warning("the %s thread did not stop within %gs", self.name, STOP_TIMEOUT_SECONDS)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks left on a stopped loop, let them finish, and close it."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def run_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` as a task of `loop` (another thread's) and block until it is done.

    What `asyncio.run_coroutine_threadsafe(...).result()` does, with a third less overhead
    (one lock, no chained future), and in the caller's `contextvars` context, so logging
    fields and the current trace span of the calling thread reach the task. Interrupted
    (KeyboardInterrupt), the call cancels its task.
    """
    done = threading.Lock()
    done.acquire()
    tasks: list[asyncio.Task[T]] = []
    context = contextvars.copy_context()

    def start() -> None:
        task = loop.create_task(coroutine, context=context)
        task.add_done_callback(lambda _: done.release())
        tasks.append(task)

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop is closed
        coroutine.close()
        raise
    try:
        done.acquire()
    except BaseException:
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
        raise
    return tasks[0].result()
