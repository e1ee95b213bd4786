"""`Receipt`: an SQS delivery's handle; `DeleteBuffer`: acks deleted in tens across calls."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyqueue.exceptions import PolyqueueError
from polyqueue_sqs.entries import BATCH, batches

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ["ACK_LINGER", "ACK_MARGIN", "DeleteBuffer", "Receipt"]

log = logging.getLogger(__name__)

ACK_LINGER = 1.0
"""Longest an ack waits for others to share its `DeleteMessageBatch` (ten go at once). Nothing
waits for the delete: the outcome is committed, and the message stays invisible meanwhile."""
ACK_MARGIN = 0.5
"""An ack is deleted at least this long before its message's visibility ends."""


@dataclass(slots=True, eq=False)
class Receipt:
    """`Delivery.handle` of the sqs broker: SQS's receipt handle, and until when the message
    is invisible as far as this broker knows (monotonic seconds, never overestimated)."""

    handle: str
    invisible_until: float
    checked_at: float
    """When `extend` last looked at this receipt (first: when it was received)."""

    def needs_extending(self, seconds: float, now: float) -> bool:
        """Whether `extend(seconds)` must call SQS now, or can wait for its next call.

        Skipped while, at the next call (expected as long from now as since the previous
        one), the message will still be invisible for at least half of `seconds`: a worker
        extending on every heartbeat makes one call per half lease, not one per heartbeat.
        """
        gap, self.checked_at = now - self.checked_at, now
        return self.invisible_until - now - gap < seconds / 2


class DeleteBuffer:
    """Acked receipts, deleted ten per `DeleteMessageBatch`, whoever acked them.

    Ten pending for a queue go at once; fewer wait at most `linger` seconds for more, and go
    `ACK_MARGIN` before the visibility of any of them ends. `flush` sends the rest and waits
    for every call. A failed delete is logged: its job's outcome is committed, so the
    message, redelivered once its visibility ends, finds the job finished and is dropped.
    """

    def __init__(
        self, delete: Callable[[str, list[str]], Awaitable[None]], linger: float = ACK_LINGER
    ) -> None:
        self._delete = delete
        self._linger = linger
        self._pending: dict[str, list[Receipt]] = {}
        self._due: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Receipts not sent yet."""
        return sum(len(receipts) for receipts in self._pending.values())

    def add(self, queue: str, receipts: Sequence[Receipt]) -> None:
        """Delete `receipts` of `queue` soon: now if ten are pending, else within `linger`."""
        pending = self._pending.setdefault(queue, [])
        pending.extend(receipts)
        while len(pending) >= BATCH:
            self._send(queue, pending[:BATCH])
            del pending[:BATCH]
        if not pending:
            self._forget(queue)
            return
        latest = time.monotonic() + self._linger
        due = min(self._due.get(queue, latest), *(r.invisible_until - ACK_MARGIN for r in pending))
        self._due[queue] = due
        self._arm()

    async def flush(self) -> None:
        """Send everything pending and wait until every delete call has ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for queue in list(self._pending):
            self._send_all(queue)
        while self._sending:
            await asyncio.wait(set(self._sending))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(min(self._due.values()) - time.monotonic(), 0.0)
        self._timer = asyncio.get_running_loop().call_later(delay, self._send_due)

    def _send_due(self) -> None:
        self._timer = None
        now = time.monotonic()
        for queue in [queue for queue, due in self._due.items() if due <= now]:
            self._send_all(queue)
        if self._due:
            self._arm()

    def _send_all(self, queue: str) -> None:
        for chunk in batches(self._pending.get(queue, [])):
            self._send(queue, chunk)
        self._forget(queue)

    def _forget(self, queue: str) -> None:
        self._pending.pop(queue, None)
        self._due.pop(queue, None)

    def _send(self, queue: str, receipts: Sequence[Receipt]) -> None:
        handles = [receipt.handle for receipt in receipts]
        task = asyncio.get_running_loop().create_task(self._delete_logged(queue, handles))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _delete_logged(self, queue: str, handles: list[str]) -> None:
        try:
            await self._delete(queue, handles)
        except PolyqueueError as exc:
            log.warning("deleting %d acked SQS messages of %r failed: %s", len(handles), queue, exc)
