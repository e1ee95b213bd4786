"""`OutcomeWriter`: records finished attempts in batches (group commit), then acks them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from polyqueue.backoff import Backoff
from polyqueue.broker import present
from polyqueue.exceptions import (
    BrokerError,
    BrokerUnavailableError,
    DatabaseUnavailableError,
    PolyqueueError,
    StoreError,
)
from polyqueue.supervision import supervise

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from polyqueue.broker import Broker, Delivery
    from polyqueue.job import Outcome
    from polyqueue.store import JobStore
    from polyqueue.store.jobstore import CompletedJobs
    from polyqueue.store.records import ReleasedJob

__all__ = ["OutcomeWriter"]

log = logging.getLogger(__name__)

_Pending = tuple["Outcome", "Delivery | None", "asyncio.Future[bool]"]


class OutcomeWriter:
    """Collects outcomes while the previous batch is being written, so one statement and one
    commit serve many jobs without adding latency. Acks follow the commit, never precede it.
    The statement also settles the edges of finished jobs with dependents; `on_released` is
    given the dependents it released once the commit is done (to publish their notices).
    """

    def __init__(
        self,
        store: JobStore,
        broker: Broker,
        on_scheduled: Callable[[datetime], None],
        on_released: Callable[[list[ReleasedJob]], Awaitable[None]] | None = None,
        flow_channel: str | None = None,
    ) -> None:
        self._store = store
        self._broker = broker
        colocation = broker.colocation(store.url, store.schema)
        self._acks_in_statement = colocation is not None and colocation.announce_channel is not None
        self._announce_channel = colocation.announce_channel if colocation is not None else None
        self._on_scheduled = on_scheduled
        self._on_released = on_released
        self._flow_channel = flow_channel
        self._pending: list[_Pending] = []
        self._ready = asyncio.Event()
        self._closing = False

    async def record(self, outcome: Outcome, delivery: Delivery | None) -> bool:
        """Write `outcome` and ack `delivery` (None: the job was started without a notice);
        False if the attempt had been fenced off."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, delivery, future))
        self._ready.set()
        return await future

    @property
    def pending(self) -> int:
        """Outcomes waiting to be written."""
        return len(self._pending)

    async def run(self) -> None:
        """Write batches until `close` is called and nothing is pending. Supervised: an
        unexpected failure fails the outcomes of its batch (their jobs are no longer
        heartbeated, so maintenance reclaims them) and the writer goes on with the next."""
        await supervise(
            "the outcome writer",
            self._next_batch,
            until=lambda: self._closing and not self._pending,
        )

    def close(self) -> None:
        """Finish the pending batches, then stop `run`."""
        self._closing = True
        self._ready.set()

    def abandon(self, reason: str) -> None:
        """Fail every outcome still waiting (the worker stops without storing them)."""
        pending, self._pending = self._pending, []
        _fail_futures(pending, DatabaseUnavailableError(reason))

    async def _next_batch(self) -> None:
        await self._ready.wait()
        self._ready.clear()
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._write(batch)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else None
            _fail_futures(batch, error or DatabaseUnavailableError("the outcome writer stopped"))
            raise

    async def _write(self, batch: list[_Pending]) -> None:
        deliveries = present(delivery for _, delivery, _ in batch)
        try:
            current = await self._write_until_stored([o for o, _, _ in batch], deliveries)
        except (StoreError, BrokerError) as exc:
            if len(batch) > 1:  # one bad outcome must not hold back the others
                for pending in batch:
                    await self._write([pending])
                return
            current = await self._write_replacement(batch[0], exc)
        if not self._broker.capabilities.transactional_ack:
            await self._ack(deliveries)
        for outcome, _, future in batch:
            if not future.done():
                future.set_result(outcome.job_id in current)

    async def _write_replacement(self, pending: _Pending, error: PolyqueueError) -> set[int]:
        """Fail the job with the reason its outcome was refused, so it cannot stay running."""
        outcome, _, future = pending
        log.error("job %s: outcome refused by the database: %s", outcome.job_id, error)
        failed = replace(
            outcome,
            status="failed",
            result=None,
            error_type="OutcomeRefusedError",
            error_message=f"the outcome could not be stored: {error}".replace("\x00", ""),
            error_traceback=None,
        )
        try:
            return await self._write_until_stored([failed], present([pending[1]]))
        except (StoreError, BrokerError) as exc:
            if not future.done():
                future.set_exception(exc)
            return set()

    async def _write_until_stored(
        self, outcomes: list[Outcome], deliveries: list[Delivery]
    ) -> set[int]:
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            try:
                rows = await self._store_once(outcomes, deliveries)
            except (DatabaseUnavailableError, BrokerUnavailableError) as exc:
                log.warning("database unavailable, retrying %d outcomes: %s", len(outcomes), exc)
                await backoff.sleep()
                continue
            for run_at in [*rows.values(), *(r.run_at for r in rows.released)]:
                if run_at is not None:
                    self._on_scheduled(run_at)
            if rows.released and self._on_released is not None:
                await self._on_released(rows.released)
            return set(rows)

    async def _store_once(
        self, outcomes: list[Outcome], deliveries: list[Delivery]
    ) -> CompletedJobs:
        """One commit: the outcomes (and the dependents they release), and the acks too when
        the broker can join it."""
        if self._acks_in_statement:  # notices are rows of broker_messages: one statement
            receipts = [delivery.handle for delivery in deliveries]
            return await self._store.job_complete_many(
                outcomes,
                receipts=receipts,
                announce_channel=self._announce_channel,
                flow_channel=self._flow_channel,
            )
        if not self._broker.capabilities.transactional_ack:
            return await self._store.job_complete_many(outcomes, flow_channel=self._flow_channel)
        async with self._store.transaction() as connection:
            rows = await self._store.job_complete_many(
                outcomes, connection, flow_channel=self._flow_channel
            )
            await self._broker.ack_in(connection, deliveries)
        return rows

    async def _ack(self, deliveries: list[Delivery]) -> None:
        try:
            await self._broker.ack(deliveries)
        except BrokerError as exc:
            # The outcome is committed: a redelivery finds the job finished and is dropped.
            log.warning("acking %d deliveries failed: %s", len(deliveries), exc)


def _fail_futures(batch: list[_Pending], error: Exception) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)
