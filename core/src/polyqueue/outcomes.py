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
    from collections.abc import Awaitable, Callable, Collection
    from datetime import datetime

    from polyqueue.broker import Broker, Delivery
    from polyqueue.job import Outcome
    from polyqueue.store import JobStore
    from polyqueue.store.jobstore import CompletedJobs
    from polyqueue.store.records import ReleasedJob

__all__ = ["OutcomeWriter"]

log = logging.getLogger(__name__)

_Pending = tuple["Outcome", "Delivery | None", "asyncio.Future[bool]"]
_Written = list[tuple["Outcome", "Delivery | None"]]


class OutcomeWriter:
    """Collects outcomes while the previous batch is being written, so one statement and one
    commit serve many jobs without adding latency. Acks follow the commit, never precede it,
    and only the deliveries of outcomes stored are acked: the delivery of an outcome fenced
    off is nacked, since its job may be queued again (a claim lost in a crash) and needs it.
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
        *,
        worker_id: Callable[[], str] | None = None,
    ) -> None:
        self._store = store
        self._broker = broker
        colocation = broker.colocation(store.url, store.schema)
        self._acks_in_statement = colocation is not None and colocation.announce_channel is not None
        self._announce_channel = colocation.announce_channel if colocation is not None else None
        self._on_scheduled = on_scheduled
        self._on_released = on_released
        self._flow_channel = flow_channel
        self._worker_id = worker_id
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
        written = [(outcome, delivery) for outcome, delivery, _ in batch]
        try:
            current = await self._write_until_stored(written)
        except (StoreError, BrokerError) as exc:
            if len(batch) > 1:  # one bad outcome must not hold back the others
                for pending in batch:
                    await self._write([pending])
                return
            current = await self._write_replacement(batch[0], exc)
        await self._settle_deliveries(written, current)
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
            return await self._write_until_stored([(failed, pending[1])])
        except (StoreError, BrokerError) as exc:
            if not future.done():
                future.set_exception(exc)
            return set()

    async def _write_until_stored(self, written: _Written) -> set[int]:
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            try:
                rows = await self._store_once(written)
            except (DatabaseUnavailableError, BrokerUnavailableError) as exc:
                log.warning("database unavailable, retrying %d outcomes: %s", len(written), exc)
                await backoff.sleep()
                continue
            for run_at in [*rows.values(), *(r.run_at for r in rows.released)]:
                if run_at is not None:
                    self._on_scheduled(run_at)
            if rows.released and self._on_released is not None:
                await self._on_released(rows.released)
            return set(rows)

    async def _store_once(self, written: _Written) -> CompletedJobs:
        """One commit: the outcomes (and the dependents they release), and the acks of those
        stored too when the broker can join it."""
        outcomes = [outcome for outcome, _ in written]
        worker_id = None if self._worker_id is None else self._worker_id()
        if self._acks_in_statement:  # notices are rows of broker_messages: one statement
            receipts = [None if delivery is None else delivery.handle for _, delivery in written]
            return await self._store.job_complete_many(
                outcomes,
                receipts=receipts,
                announce_channel=self._announce_channel,
                flow_channel=self._flow_channel,
                worker_id=worker_id,
            )
        if not self._broker.capabilities.transactional_ack:
            return await self._store.job_complete_many(
                outcomes, flow_channel=self._flow_channel, worker_id=worker_id
            )
        async with self._store.transaction() as connection:
            rows = await self._store.job_complete_many(
                outcomes, connection, flow_channel=self._flow_channel, worker_id=worker_id
            )
            await self._broker.ack_in(connection, _deliveries(written, rows, stored=True))
        return rows

    async def _settle_deliveries(self, written: _Written, current: set[int]) -> None:
        """After the commit: ack the deliveries of the outcomes stored (unless the commit did)
        and nack those of the outcomes fenced off (unless the statement did)."""
        if not self._broker.capabilities.transactional_ack:
            await self._settle(
                "acking", self._broker.ack, _deliveries(written, current, stored=True)
            )
        if not self._acks_in_statement:
            fenced_off = _deliveries(written, current, stored=False)
            await self._settle("nacking", self._broker.nack, fenced_off)

    async def _settle(
        self,
        what: str,
        settle: Callable[[list[Delivery]], Awaitable[None]],
        deliveries: list[Delivery],
    ) -> None:
        if not deliveries:
            return
        try:
            await settle(deliveries)
        except BrokerError as exc:
            # The outcome is committed: a redelivery finds the job finished and is dropped.
            log.warning("%s %d deliveries failed: %s", what, len(deliveries), exc)


def _deliveries(written: _Written, current: Collection[int], *, stored: bool) -> list[Delivery]:
    """The deliveries of the outcomes in `written` that were `stored` (or fenced off)."""
    return present(
        delivery for outcome, delivery in written if (outcome.job_id in current) == stored
    )


def _fail_futures(batch: list[_Pending], error: Exception) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)
