"""`Membership`: a worker's row in the registry, and the id it claims jobs under.

The row is written before anything is claimed under its id and heartbeated from then on.
If maintenance declared the worker dead (it stalled past `worker_stale_after`, and its jobs
were reclaimed), the worker carries on under a new id, registered before its next claim:
nothing is ever claimed under a dead id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from polyqueue.store import WorkerRegistration

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from polyqueue.store import JobStore

__all__ = ["Membership", "new_worker_id"]

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix (never reused after restart)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Membership:
    """Registers a worker, heartbeats its row, and re-registers it under a new id when it
    was declared dead. `registered` is clear while no live id may claim."""

    def __init__(
        self,
        store: JobStore,
        queues: Sequence[str],
        concurrency: int,
        current_jobs: Callable[[], int],
    ) -> None:
        self._store = store
        self._queues = list(queues)
        self._concurrency = concurrency
        self._current_jobs = current_jobs
        self.id = new_worker_id()
        self.registered = asyncio.Event()

    async def register(self) -> None:
        """Write the row of the current id; claim under it from now on."""
        await self._store.worker_register(self._registration())
        self.registered.set()

    async def heartbeat(self) -> None:
        """Refresh the row; if the worker was declared dead, carry on under a new id."""
        if self.registered.is_set():
            if await self._store.worker_heartbeat(self._registration()):
                return
            log.error("worker %s was declared dead (a stall); its jobs were reclaimed", self.id)
            self.registered.clear()  # claim nothing more under the dead id
        old, self.id = self.id, new_worker_id()
        await self.register()
        log.warning("worker %s continues as %s", old, self.id)

    async def leave(self) -> None:
        """Mark the row stopped."""
        await self._store.worker_stop(self.id)

    def _registration(self) -> WorkerRegistration:
        return WorkerRegistration(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self._queues,
            self._concurrency,
            self._current_jobs(),
        )
