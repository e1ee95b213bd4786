"""The `postgres` broker: notices in a table of the jobs database, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import asyncpg

from polyqueue.broker import (
    Broker,
    BrokerEnvironment,
    Capabilities,
    ClaimedDelivery,
    Colocation,
    Delivery,
    Message,
)
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.job import ClaimedJob
from polyqueue.listener import Listener
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.sql import claim_fragments, load_queries
from polyqueue.store.errors import translate_errors
from polyqueue.wakeup import Wakeup

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from polyqueue.broker import ClaimTerms

__all__ = ["PostgresBroker"]

T = TypeVar("T")


class PostgresBroker(Broker):
    """Claims with `FOR UPDATE SKIP LOCKED`; publishes inside the caller's transaction."""

    name: ClassVar[str] = "postgres"
    capabilities: Capabilities = Capabilities(
        max_batch=1000,
        native_delay=True,
        max_delay_seconds=float("inf"),
        priority=True,
        transactional_publish=True,
        transactional_ack=True,
    )

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        lease_seconds: float = 30.0,
        options: ConnectionOptions | None = None,
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self._url = url
        self._schema = schema
        self._options = options or ConnectionOptions()
        queries = load_queries("broker_postgres.sql", schema, fragments=claim_fragments(schema))
        self._sql = {name: query.sql for name, query in queries.items()}
        self.channel = f"{schema}_broker"
        """The NOTIFY channel that wakes receivers (also written to by the job store's
        inserts, see `colocation`)."""
        self._pool: asyncpg.Pool | None = None
        self._wakeup = Wakeup()
        self._listener = Listener(
            url,
            [self.channel],
            self._on_notify,
            on_reconnect=self._wakeup.wake,
            options=self._options,
        )
        self._listening = False
        self._listen_lock = asyncio.Lock()

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Use the jobs database and schema."""
        return cls(
            environment.database_url,
            environment.schema,
            lease_seconds=environment.settings.lease_seconds,
            options=ConnectionOptions.from_settings(environment.settings),
        )

    async def start(self) -> None:
        """Open a small pool; the LISTEN connection waits for the first `receive`, so an app
        that only enqueues is not sent a notification for every job it enqueues."""
        with self._translate():
            # Nothing on this pool waits for the disk flush (docs/decisions.md): a lease, a
            # claim, a notice, an ack or a nack lost in a server crash is redone (the lease
            # expires, the job is reclaimed and its outcome fenced, the republisher rings
            # again, a notice of a finished job is dropped).
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=4,
                **self._options.pool_arguments(wait_for_flush=False),
            )

    async def close(self) -> None:
        """Close the LISTEN connection and the pool; wake receivers so they return."""
        await self._listener.close()
        self._listening = False
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except Exception:
                pool.terminate()
        self._wakeup.wake()

    async def publish(self, messages: Sequence[Message]) -> None:
        """Insert the messages in one statement per 1000."""
        with self._translate():
            for chunk in _chunks(messages, self.capabilities.max_batch):
                await self._require_pool().execute(
                    self._sql["message_send_many"], *self._rows(chunk)
                )

    async def publish_in(self, connection: Any, messages: Sequence[Message]) -> None:
        """Insert the messages on `connection`: they exist if and only if it commits."""
        with self._translate():
            for chunk in _chunks(messages, self.capabilities.max_batch):
                await connection.execute(self._sql["message_send_many"], *self._rows(chunk))

    async def unheld(self, messages: Sequence[Message]) -> list[Message]:
        """The messages whose row is not in the table any more."""
        if not messages:
            return []
        with self._translate():
            rows = await self._require_pool().fetch(
                self._sql["message_held"], [m.queue for m in messages], [m.body for m in messages]
            )
        held = {(row["queue"], bytes(row["body"])) for row in rows}
        return [m for m in messages if (m.queue, m.body) not in held]

    def _rows(self, messages: Sequence[Message]) -> tuple[Any, ...]:
        return (
            [m.queue for m in messages],
            [m.body for m in messages],
            [m.priority for m in messages],
            [m.delay for m in messages],
            self.channel,
        )

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Lease available messages; if none, wait for a NOTIFY (or the timeout) and retry."""

        async def lease() -> list[asyncpg.Record]:
            with self._translate():
                rows: list[asyncpg.Record] = await self._require_pool().fetch(
                    self._sql["message_receive"], list(queues), max_messages, self.lease_seconds
                )
            return rows

        rows = await self._poll(lease, wait_seconds)
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return [
            self._delivery(row["id"], row["deliveries"], row["queue"], row["body"]) for row in rows
        ]

    async def _poll(self, fetch: Callable[[], Awaitable[list[T]]], wait_seconds: float) -> list[T]:
        """Call `fetch` until it returns rows, waiting for a NOTIFY (a nack, an interrupt) in
        between; `[]` after `wait_seconds`, on `interrupt()` or once closed. `receive` and
        `receive_claiming` lease with it."""
        deadline = time.monotonic() + wait_seconds
        self._require_pool()  # a closed broker raises instead of returning at once, forever
        await self._listen()
        waiter = self._wakeup.waiter()
        while self._pool is not None and not waiter.interrupted:
            rows = await fetch()
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                return rows
            await waiter.wait(remaining)  # a NOTIFY, a nack, an interrupt, or closing
        return []

    def colocation(self, database_url: str, schema: str) -> Colocation | None:
        """Beside the jobs when built on their database and schema (`from_environment`
        does): its messages are rows of the core's `broker_messages` table."""
        if (database_url, schema) != (self._url, self._schema):
            return None
        return Colocation(announce_channel=self.channel)

    async def receive_claiming(
        self,
        queues: Sequence[str],
        *,
        max_messages: int,
        wait_seconds: float,
        terms: ClaimTerms,
    ) -> list[ClaimedDelivery]:
        """Lease notices as `receive` does and claim their jobs in the same statement."""

        async def lease_and_claim() -> list[asyncpg.Record]:
            with self._translate():
                rows: list[asyncpg.Record] = await self._require_pool().fetch(
                    self._sql["message_receive_claiming"],
                    terms.worker_id,
                    terms.timeout_grace,
                    list(terms.held),
                    list(queues),
                    max_messages,
                    self.lease_seconds,
                )
            return rows

        rows = await self._poll(lease_and_claim, wait_seconds)
        return [
            ClaimedDelivery(
                self._delivery(
                    row["message_id"],
                    row["message_deliveries"],
                    row["message_queue"],
                    row["message_body"],
                ),
                None if row["id"] is None else ClaimedJob.from_row(row),
            )
            for row in rows
        ]

    def _delivery(self, message_id: int, deliveries: int, queue: str, body: bytes) -> Delivery:
        """The delivery of a leased row: its receipt is the id and the delivery count."""
        return Delivery(self, queue, bytes(body), (message_id, deliveries))

    async def _listen(self) -> None:
        """Start the LISTEN connection once, before the first receive's query."""
        async with self._listen_lock:
            if not self._listening:
                with self._translate():
                    await self._listener.start()
                self._listening = True

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the delivered rows (receipt must match)."""
        if deliveries:
            with self._translate():
                await self._require_pool().execute(
                    self._sql["message_delete_many"], *_receipts(deliveries)
                )

    async def ack_in(self, connection: Any, deliveries: Sequence[Delivery]) -> None:
        """Delete the delivered rows on `connection`: gone if and only if it commits."""
        if deliveries:
            with self._translate():
                await connection.execute(self._sql["message_delete_many"], *_receipts(deliveries))

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Make the rows available again after `delay`."""
        await self._set_available(deliveries, delay)
        if delay <= 0:
            self._wakeup.wake()

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Push the rows' availability `seconds` into the future."""
        await self._set_available(deliveries, seconds)

    async def _set_available(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        if deliveries:
            with self._translate():
                await self._require_pool().execute(
                    self._sql["message_set_available_many"], *_receipts(deliveries), seconds
                )

    def interrupt(self) -> None:
        """Wake waiting receives and make them return `[]`."""
        self._wakeup.interrupt()

    def _on_notify(self, _channel: str, _payload: str) -> None:
        self._wakeup.wake()

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise BrokerUnavailableError("the postgres broker is closed", broker=self.name)
        return self._pool

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        return translate_errors(
            "postgres broker",
            unavailable=lambda message: BrokerUnavailableError(message, broker=self.name),
            refused=lambda message: BrokerError(message, broker=self.name),
        )


def _receipts(deliveries: Sequence[Delivery]) -> tuple[list[int], list[int]]:
    return [d.handle[0] for d in deliveries], [d.handle[1] for d in deliveries]


def _chunks(items: Sequence[Message], size: int) -> Iterator[Sequence[Message]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
