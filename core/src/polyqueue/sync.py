"""`SyncPolyqueue` (`app.sync`): blocking enqueue, read, wait and control for code that is
not async: Django and Flask views, scripts, a Celery migration.

One event loop per app runs in a daemon thread (`polyqueue.portal.LoopThread`), started by
the first call; each call hands a coroutine to it. An app already started with `async with
app:` in another thread (a FastAPI lifespan, say) is used where it runs instead.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from polyqueue.exceptions import ConfigurationError
from polyqueue.portal import LoopThread, run_on

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping, Sequence
    from datetime import datetime, timedelta

    from polyqueue.app import Polyqueue
    from polyqueue.client import Payload
    from polyqueue.job import Job, JobId, JobIds
    from polyqueue.registry import HandlerRef

__all__ = ["SyncPolyqueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SyncPolyqueue:
    """Blocking calls on a `Polyqueue`, safe from any number of threads.

    - Not started yet: the first call starts the app on a loop in a daemon thread of its own;
      `close()`, leaving `with app.sync:`, or the interpreter's exit closes it again.
    - Started elsewhere (`async with app:` on another thread's loop): calls run there, and
      closing stays with whoever started it.
    - Called on the loop the app runs on, a blocking call would deadlock: it raises instead
      (there, `await app.enqueue(...)`).
    """

    def __init__(self, app: Polyqueue) -> None:
        self.app = app
        self._portal = LoopThread("polyqueue-sync")
        self._lock = threading.Lock()
        self._started_here = False
        self._pid = 0  # of the process that started the app here

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the app now (else the first call does): pool, migrations, broker."""
        self._loop()

    def close(self) -> None:
        """Close the app if this client started it, and stop its thread; idempotent."""
        with self._lock:
            if not self._started_here:
                return
            self._started_here = False
        atexit.unregister(self._close_at_exit)
        try:
            self._portal.call(self.app.close())
        finally:
            self._portal.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception:
            log.exception("closing the app at exit failed")

    def _loop(self) -> asyncio.AbstractEventLoop:
        """The loop the app runs on, starting it on this client's thread if it does not run."""
        if self._started_here and os.getpid() != self._pid:
            raise ConfigurationError(
                "app.sync was used before this process forked: its thread and connections "
                "stayed in the parent. Use it first in the child (e.g. no --preload), or build "
                "the app after the fork"
            )
        with self._lock:
            if not self._started_here and self.app.loop is None:
                try:
                    self._portal.call(self.app.start())
                except BaseException:
                    self._portal.stop()
                    raise
                self._started_here = True
                self._pid = os.getpid()
                atexit.register(self._close_at_exit)
            loop = self._portal.loop if self._started_here else self.app.loop
        if loop is None:  # closed by another thread between the two looks
            return self._loop()
        if _running_loop() is loop:
            raise RuntimeError(
                "app.sync was called on the event loop the app runs on, where blocking would "
                "deadlock: await the async method instead (e.g. `await app.enqueue(...)`)"
            )
        return loop

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._loop()
        except BaseException:
            coroutine.close()
            raise
        return run_on(loop, coroutine)

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(
        self,
        handler: HandlerRef,
        payload: Payload,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        unique: bool | str | None = None,
        unique_for: float | timedelta | None = None,
        connection: Any = None,
    ) -> JobId:
        """`Polyqueue.enqueue`, blocking. `connection` may be a psycopg 3 connection (Django's
        `connection.connection`): the job is then part of its transaction."""
        return self._call(
            self.app.enqueue(
                handler,
                payload,
                delay=delay,
                run_at=run_at,
                priority=priority,
                queue=queue,
                idempotency_key=idempotency_key,
                max_attempts=max_attempts,
                headers=headers,
                unique=unique,
                unique_for=unique_for,
                connection=connection,
            )
        )

    def enqueue_many(
        self,
        handler: HandlerRef,
        payloads: Sequence[Payload],
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        unique: bool | Sequence[str] | None = None,
        unique_for: float | timedelta | None = None,
        connection: Any = None,
    ) -> JobIds:
        """`Polyqueue.enqueue_many`, blocking."""
        return self._call(
            self.app.enqueue_many(
                handler,
                payloads,
                delay=delay,
                run_at=run_at,
                priority=priority,
                queue=queue,
                max_attempts=max_attempts,
                headers=headers,
                unique=unique,
                unique_for=unique_for,
                connection=connection,
            )
        )

    # -- reading ------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        """`Polyqueue.get_job`, blocking."""
        return self._call(self.app.get_job(job_id))

    def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """`Polyqueue.wait_for`, blocking: until the job finished, or `JobTimeoutError`."""
        return self._call(self.app.wait_for(job_id, timeout))

    def get_job_result(self, job_id: int) -> Any:
        """`Polyqueue.get_job_result`, blocking."""
        return self._call(self.app.get_job_result(job_id))

    @overload
    def get_job_result_typed(self, job_id: int, model: type[T]) -> T: ...
    @overload
    def get_job_result_typed(self, job_id: int, model: Any) -> Any: ...
    def get_job_result_typed(self, job_id: int, model: Any) -> Any:
        """`Polyqueue.get_job_result_typed`, blocking."""
        return self._call(self.app.get_job_result_typed(job_id, model))

    def get_job_result_typed_via_registry(self, job_id: int) -> Any:
        """`Polyqueue.get_job_result_typed_via_registry`, blocking."""
        return self._call(self.app.get_job_result_typed_via_registry(job_id))

    # -- control ------------------------------------------------------------------------------

    def cancel(self, job_id: int) -> bool:
        """`Polyqueue.cancel`, blocking."""
        return self._call(self.app.cancel(job_id))

    def requeue(self, job_id: int) -> bool:
        """`Polyqueue.requeue`, blocking."""
        return self._call(self.app.requeue(job_id))

    def fail(self, job_id: int, reason: str = "failed by an operator") -> bool:
        """`Polyqueue.fail`, blocking."""
        return self._call(self.app.fail(job_id, reason))

    # -- working ------------------------------------------------------------------------------

    def run_until_idle(
        self, *, queues: Sequence[str] | None = None, concurrency: int | None = None
    ) -> None:
        """`Polyqueue.run_until_idle`, blocking: run jobs until none is ready (for tests)."""
        self._call(self.app.run_until_idle(queues=queues, concurrency=concurrency))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
