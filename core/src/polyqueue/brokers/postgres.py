"""The `postgres` broker: notices in a table of the jobs database, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import asyncpg

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.listener import Listener
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.sql import load_queries
from polyqueue.store_errors import translate_errors

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Awaitable, Callable, Iterator, Sequence

__all__ = ["PostgresBroker", "colocated"]

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
        self._sql = {name: q.sql for name, q in load_queries("broker_postgres.sql", schema).items()}
        self.channel = f"{schema}_broker"
        """The NOTIFY channel that wakes receivers (also written to by `job_insert_many`)."""
        self._pool: asyncpg.Pool | None = None
        self._listener = Listener(
            url, [self.channel], self._wake, on_reconnect=self._wake_all, options=self._options
        )
        self._listening = False
        self._listen_lock = asyncio.Lock()
        self._interrupts = 0
        self._waiters: set[asyncio.Future[None]] = set()

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
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=4, **self._options.pool_arguments()
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
        self._wake_all()

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

        rows = await self.poll(lease, wait_seconds)
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return [
            self.delivery(row["id"], row["deliveries"], row["queue"], row["body"]) for row in rows
        ]

    async def poll(self, fetch: Callable[[], Awaitable[list[T]]], wait_seconds: float) -> list[T]:
        """Call `fetch` until it returns rows, waiting for a NOTIFY (a nack, an interrupt) in
        between; `[]` after `wait_seconds`, on `interrupt()` or once closed.

        `receive` leases with it; a worker of this broker polls with the store's
        `job_claim_notices`, which leases notices and claims their jobs in one statement.
        """
        deadline = time.monotonic() + wait_seconds
        self._require_pool()  # a closed broker raises instead of returning at once, forever
        await self._listen()
        interrupts = self._interrupts
        while self._pool is not None and interrupts == self._interrupts:
            woken = asyncio.get_running_loop().create_future()  # set by NOTIFY, nack, interrupt
            self._waiters.add(woken)
            try:
                rows = await fetch()
                if rows:
                    return rows
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                await asyncio.wait({woken}, timeout=remaining)
            finally:
                self._waiters.discard(woken)
        return []

    def delivery(self, message_id: int, deliveries: int, queue: str, body: bytes) -> Delivery:
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
            self._wake_all()

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
        self._interrupts += 1
        self._wake_all()

    def _wake(self, _channel: str, _payload: str) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for woken in waiters:
            if not woken.done():
                woken.set_result(None)

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


def colocated(broker: Broker, url: str, schema: str) -> PostgresBroker | None:
    """`broker` if it is the built-in one on this database and schema, else None.

    Its notices then live beside the jobs, so enqueue writes them in the jobs' statement
    and a worker leases them in the statement that claims the jobs.
    """
    if isinstance(broker, PostgresBroker) and (broker._url, broker._schema) == (url, schema):  # noqa: SLF001
        return broker
    return None


def _receipts(deliveries: Sequence[Delivery]) -> tuple[list[int], list[int]]:
    return [d.handle[0] for d in deliveries], [d.handle[1] for d in deliveries]


def _chunks(items: Sequence[Message], size: int) -> Iterator[Sequence[Message]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
