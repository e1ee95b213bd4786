"""`QueueControl`: pausing queues and setting their limits, mixed into the app.

A queue's limits and pause live in PostgreSQL (`flow_limits`, `paused_queues`), so every
worker obeys them at its next claim, and they stay until changed: by the app, by the CLI
(`polyqueue admin queue ...`) or by the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyqueue.flow import flow_channel, ring_for_released
from polyqueue.limits import Limits, Rate
from polyqueue.notices import notice_message

if TYPE_CHECKING:
    from datetime import datetime

    from polyqueue.runtime import Runtime

__all__ = ["FlowLimit", "PausedQueue", "QueueControl"]


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """A limit in force, with the jobs running under it and waiting for it."""

    scope: str
    """`handler` or `queue`."""
    name: str
    limits: Limits
    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class PausedQueue:
    """A paused queue and its waiting jobs."""

    queue: str
    paused_at: datetime
    waiting: int


class QueueControl:
    """Pause, resume and limit queues of a started app (`Polyqueue` is one)."""

    if TYPE_CHECKING:  # provided by Polyqueue

        @property
        def runtime(self) -> Runtime: ...

    async def configure_queue(
        self,
        queue: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: str | Rate | None = None,
    ) -> None:
        """Limit `queue` across every worker: at most `concurrency_limit` of its jobs running
        at once, at most `rate_limit` (`"50/s"`) starting in any window. Both None removes
        its limits. Takes effect at every worker's next claim and stays until changed."""
        runtime = self.runtime
        limits = Limits.build(concurrency_limit, rate_limit, what=f"queue {queue!r}")
        if limits is None:
            await runtime.store.flow_limit_clear("queue", queue)
            await ring_for_released(runtime, "queue", queue)
        else:
            await runtime.store.flow_limit_set("queue", queue, limits)
        await _wake_workers(runtime)

    async def pause_queue(self, queue: str) -> None:
        """Stop every worker from starting jobs of `queue`, at once; running jobs finish.
        Enqueueing goes on: the jobs wait, and start once the queue is resumed."""
        await self.runtime.store.queue_pause(queue)

    async def resume_queue(self, queue: str) -> int:
        """Let workers start jobs of `queue` again; return how many were waiting (their
        notices are rung again, so any broker's workers pick them up)."""
        runtime = self.runtime
        rows = await runtime.store.queue_resume(queue)
        await runtime.publisher.publish(
            [notice_message(row["id"], row["queue"], row["priority"]) for row in rows]
        )
        await _wake_workers(runtime)
        return len(rows)

    async def flow_limits(self) -> list[FlowLimit]:
        """Every limit in force (handlers' and queues'), with running and waiting jobs."""
        return [
            FlowLimit(
                row["scope"],
                row["name"],
                Limits(
                    row["concurrency_limit"],
                    None
                    if row["rate_limit"] is None
                    else Rate(row["rate_limit"], row["rate_window"]),
                    row["per_key"],
                ),
                row["running"],
                row["waiting"],
            )
            for row in await self.runtime.store.flow_limits_list()
        ]

    async def paused_queues(self) -> list[PausedQueue]:
        """The paused queues, with their waiting jobs."""
        return [
            PausedQueue(row["queue"], row["paused_at"], row["waiting"])
            for row in await self.runtime.store.queues_paused()
        ]


async def _wake_workers(runtime: Runtime) -> None:
    """Tell every worker to look at its held-back jobs now."""
    store = runtime.store
    await store.notify(flow_channel(runtime.settings), "", store.pool)
