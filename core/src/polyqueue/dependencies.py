"""Inserting jobs with dependencies and settling edges, notices included: what the client,
the control actions and maintenance share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.flow import flow_channel
from polyqueue.producer import notices_of
from polyqueue.store.records import InsertedJob

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.runtime import Runtime
    from polyqueue.store import SqlExecutor
    from polyqueue.store.records import InsertedWorkflow, NewWorkflow, ReleasedJob

__all__ = ["insert_workflow", "ring_released", "settle"]


async def insert_workflow(
    runtime: Runtime, rows: NewWorkflow, connection: SqlExecutor | None
) -> InsertedWorkflow:
    """Insert `rows` in one statement and make the notices of the jobs it queued follow.

    Edges to existing jobs are settled after the insert (after its commit when the call
    owns its transaction): a dependency that had finished, or finished while the insert
    committed, counts down its new dependents at once. Settling is idempotent, and
    maintenance settles whatever a crash in between left.
    """
    store, producer = runtime.store, runtime.producer
    channel, flow = producer.announce_channel, flow_channel(runtime.settings)
    if connection is not None:
        inserted = await store.workflow_insert(rows, connection, channel, flow)
        await producer.announce_in(connection, inserted.jobs)
        if rows.existing:
            released = await store.dependency_settle(rows.existing, connection, channel, flow)
            await producer.announce_in(connection, _as_inserted(released))
        return inserted
    if channel is None and runtime.broker.capabilities.transactional_publish:
        async with store.transaction() as own:
            inserted = await store.workflow_insert(rows, own, channel, flow)
            await producer.announce_in(own, inserted.jobs)
    else:
        inserted = await store.workflow_insert(rows, store.pool, channel, flow)
        if channel is None:
            await runtime.publisher.publish(notices_of(inserted.jobs))
    if rows.existing:
        await settle(runtime, rows.existing)
    return inserted


async def settle(
    runtime: Runtime, job_ids: Sequence[int], connection: SqlExecutor | None = None
) -> list[ReleasedJob]:
    """Settle the edges of those of `job_ids` that finished; ring for what it released (in
    `connection`'s transaction if given, else in a statement of its own)."""
    store, channel = runtime.store, runtime.producer.announce_channel
    flow = flow_channel(runtime.settings)
    if connection is not None:
        released = await store.dependency_settle(job_ids, connection, channel, flow)
        await runtime.producer.announce_in(connection, _as_inserted(released))
        return released
    released = await store.dependency_settle(job_ids, store.pool, channel, flow)
    await ring_released(runtime, released)
    return released


async def ring_released(runtime: Runtime, released: Sequence[ReleasedJob]) -> None:
    """Publish the notices of released jobs, after the commit that released them (the
    `postgres` broker's were written by that statement)."""
    if released and runtime.producer.announce_channel is None:
        await runtime.publisher.publish(notices_of(_as_inserted(released)))


def _as_inserted(released: Sequence[ReleasedJob]) -> list[InsertedJob]:
    return [
        InsertedJob(r.id, r.status, r.queue, r.priority, created=True, held_back=r.held_back)
        for r in released
    ]
