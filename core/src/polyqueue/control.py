"""Operator actions on jobs (cancel, requeue, fail), shared by the app, the CLI and the
dashboard: one transaction changes the rows, settles the edges of cancelled or failed jobs
(their dependents follow the edges' policies), queues the notices of requeued jobs and tells
the workers running them to stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from polyqueue.dependencies import settle
from polyqueue.notices import notice_message

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.broker import Message
    from polyqueue.runtime import Runtime

__all__ = ["ACTIONS", "Action", "control_jobs"]

Action = Literal["cancel", "requeue", "fail"]
ACTIONS: tuple[Action, ...] = ("cancel", "requeue", "fail")

_CANCEL_CHUNK = 500  # job ids per NOTIFY payload (PostgreSQL caps one at 8000 bytes)


async def control_jobs(
    runtime: Runtime, action: Action, job_ids: Sequence[int], reason: str
) -> list[int]:
    """Apply `action` to `job_ids`; return the ids it changed, in ascending order.

    A requeued job's notice is published in the same transaction when the broker can, else
    after the commit; workers running a changed job are told on the cancel channel (on
    commit), and stop it.
    """
    store, broker = runtime.store, runtime.broker
    messages: list[Message] = []
    async with store.transaction() as connection:
        if action == "requeue":
            rows = await store.job_requeue_many(job_ids, connection)
            messages = [notice_message(r["id"], r["queue"], r["priority"]) for r in rows]
            if messages and broker.capabilities.transactional_publish:
                await broker.publish_in(connection, messages)
                messages = []
        elif action == "cancel":
            rows = await store.job_cancel_many(job_ids, connection)
        else:
            rows = await store.job_fail_many(job_ids, reason, connection)
        if action != "requeue" and rows:  # their dependents follow their edges' policies
            await settle(runtime, [r["id"] for r in rows], connection)
        stopped = [str(r["id"]) for r in rows if r["worker_id"]]
        for chunk in range(0, len(stopped), _CANCEL_CHUNK):
            payload = ",".join(stopped[chunk : chunk + _CANCEL_CHUNK])
            await store.notify(runtime.cancel_channel, payload, connection)
    await runtime.publisher.publish(messages)
    return sorted(r["id"] for r in rows)
