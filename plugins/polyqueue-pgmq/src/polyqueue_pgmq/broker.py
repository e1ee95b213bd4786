"""`PgmqBroker`: notices in PGMQ queues, owned by visibility timeout, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

import asyncpg

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import (
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    UnsupportedCapabilityError,
)
from polyqueue.listener import Listener
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.store import describe_url
from polyqueue.store.errors import translate_errors
from polyqueue.wakeup import Wakeup
from polyqueue_pgmq.codec import decode_body, encode_body
from polyqueue_pgmq.install import install
from polyqueue_pgmq.settings import ENV_PREFIX, load_pgmq_settings
from polyqueue_pgmq.statements import SQL, pgmq_queue_name, quote_literal, statement

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["CHANNEL", "PgmqBroker"]

log = logging.getLogger(__name__)

CHANNEL = "polyqueue_pgmq"
"""NOTIFY channel of every PGMQ broker; the payload is the PGMQ queue that got messages."""

Receipt = tuple[int, int]  # (msg_id, read_ct): acks, nacks and extends check both


class PgmqBroker(Broker):
    """Reads with `pgmq.read` (a visibility timeout is the lease); sends with `send_batch`.

    Acks, nacks and extends touch a message only while its `read_ct` still matches the
    receipt, so a stale receipt (the message was read again since) changes nothing.
    """

    name: ClassVar[str] = "pgmq"
    capabilities: Capabilities = Capabilities(
        max_batch=1000,
        native_delay=True,
        max_delay_seconds=float("inf"),
        priority=False,
        transactional_publish=True,
    )

    def __init__(
        self,
        url: str,
        *,
        lease_seconds: float = 30.0,
        queue_prefix: str = "pq_",
        install: bool = False,
        archive: bool = False,
        poll_interval: float = 1.0,
        pool_max_size: int = 4,
        transactional: bool = True,
        options: ConnectionOptions | None = None,
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        if not transactional:  # PGMQ in another database than the jobs: no shared transaction
            self.capabilities = replace(self.capabilities, transactional_publish=False)
        self._url = url
        self._prefix = queue_prefix
        self._install = install
        self._archive = archive
        self._poll_interval = poll_interval
        self._pool_max_size = pool_max_size
        self._pool: asyncpg.Pool | None = None
        self._options = options or ConnectionOptions()
        self._wakeup = Wakeup()
        self._listener = Listener(
            url, [CHANNEL], self._on_notify, on_reconnect=self._wakeup.wake, options=self._options
        )
        self._known: set[str] = set()  # PGMQ queues known to exist
        self._tableless: set[str] = set()  # queues whose table went missing (created again)
        self._rotation = 0
        self._closed = False

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Read `POLYQUEUE_PGMQ_*`; PGMQ defaults to the jobs database."""
        settings = load_pgmq_settings()
        url = settings.database_url or environment.database_url
        return cls(
            url,
            lease_seconds=settings.visibility_timeout or environment.settings.lease_seconds,
            queue_prefix=settings.queue_prefix,
            install=settings.install,
            archive=settings.archive,
            poll_interval=settings.poll_interval,
            pool_max_size=settings.pool_max_size,
            transactional=url == environment.database_url,
            options=ConnectionOptions.from_settings(environment.settings),
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, check (or, if allowed, install) PGMQ, then LISTEN."""
        try:
            with self._translate():
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=self._pool_max_size,
                    **self._options.pool_arguments(),
                )
                await self._check_pgmq()
                await self._listener.start()
        except BaseException:
            await self.close()
            raise

    async def _check_pgmq(self) -> None:
        async with self._require_pool().acquire() as connection:
            state = await connection.fetchrow(SQL["pgmq_state"])
            if not state["installed"]:
                if not self._install:
                    raise ConfigurationError(_missing_message(self._url, state["available"]))
                await install(connection)
                state = await connection.fetchrow(SQL["pgmq_state"])
        if not state["has_headers"]:
            raise ConfigurationError(
                f"the PGMQ in {describe_url(self._url)} is too old: the broker needs "
                "pgmq.send_batch(text, jsonb[], jsonb[], timestamptz), with message headers"
            )

    async def close(self) -> None:
        """Wake waiting receivers (they return []), stop listening, close the pool."""
        self._closed = True
        self._wakeup.wake()
        await self._listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except Exception:
                pool.terminate()

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send the messages, one `pgmq.send_batch` per queue, delay and 1000 messages."""
        batches = self._batches(messages)
        if batches:
            with self._translate():
                await self._ensure_queues({queue for queue, _, _ in batches})
                async with self._require_pool().acquire() as connection:
                    await self._send(connection, batches)

    async def publish_in(self, connection: Any, messages: Sequence[Message]) -> None:
        """Send on `connection`: the messages exist if and only if its transaction commits."""
        if not self.capabilities.transactional_publish:
            raise UnsupportedCapabilityError(
                "the pgmq broker's PGMQ lives in another database than the jobs: "
                "it cannot publish inside their transaction",
                broker=self.name,
            )
        batches = self._batches(messages)
        if batches:
            with self._translate():
                await self._ensure_queues({queue for queue, _, _ in batches})
                await self._send(connection, batches)

    async def prepare_queue(self, queue: str) -> None:
        """Refuse a queue name PGMQ cannot hold (`BrokerError`), create the queue if needed
        (looked up again: it may have been dropped by hand since it was last seen)."""
        name = self._pgmq_name(queue)
        self._known.discard(name)
        with self._translate():
            await self._ensure_queues({name})

    def notice_sender(self, database_url: str, schema: str) -> str | None:  # noqa: ARG002
        """When PGMQ is in the jobs database, the core's insert of single jobs sends their
        notices itself (`sql/broker.sql`, `notice_sender`): one statement, one commit."""
        if not self.capabilities.transactional_publish or database_url != self._url:
            return None
        return (
            SQL["notice_sender"]
            .replace("{prefix}", quote_literal(self._prefix))
            .replace("{channel}", quote_literal(CHANNEL))
        )

    async def unheld(self, messages: Sequence[Message]) -> list[Message]:
        """The messages their queue's table does not hold (any more): the republisher rings
        only for those."""
        groups: dict[str, dict[str, Message]] = defaultdict(dict)
        for message in messages:
            text, headers = encode_body(message.body)
            if headers is None:  # stored as is (every notice): comparable as JSONB
                groups[self._pgmq_name(message.queue)][text] = message
        held: set[Message] = set()
        if groups:
            with self._translate():
                async with self._require_pool().acquire() as connection:
                    for queue, by_text in groups.items():
                        with self._gone_with_their_table(queue):
                            rows = await connection.fetch(
                                statement("message_held", queue), list(by_text)
                            )
                            held.update(by_text[row["message"]] for row in rows)
        return [message for message in messages if message not in held]

    def _batches(self, messages: Sequence[Message]) -> list[tuple[str, float, list[Message]]]:
        groups: dict[tuple[str, float], list[Message]] = defaultdict(list)
        for message in messages:
            groups[self._pgmq_name(message.queue), max(message.delay, 0.0)].append(message)
        size = self.capabilities.max_batch
        return [
            (queue, delay, group[start : start + size])
            for (queue, delay), group in groups.items()
            for start in range(0, len(group), size)
        ]

    async def _send(self, connection: Any, batches: list[tuple[str, float, list[Message]]]) -> None:
        for queue, delay, batch in batches:
            stored = [encode_body(message.body) for message in batch]
            bodies = [body for body, _ in stored]
            headers = [header for _, header in stored]
            with self._forget_if_missing(queue):
                await connection.execute(
                    SQL["message_send_many"], queue, bodies, headers, delay, CHANNEL
                )

    async def _ensure_queues(self, queues: set[str]) -> None:
        """Create the PGMQ queues not known to exist (they are created outside any transaction).

        A queue whose table went missing is created again even if `pgmq.meta` still lists it
        (`pgmq.create` is idempotent).
        """
        missing = queues - self._known
        if missing:
            async with self._require_pool().acquire() as connection:
                rows = await connection.fetch(SQL["queue_existing"], sorted(missing))
                listed = {row["queue_name"] for row in rows}
                for queue in sorted((missing - listed) | (missing & self._tableless)):
                    await connection.execute(SQL["queue_create"], queue)
            self._known |= missing
            self._tableless -= missing

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Read from the queues in turn; if none has messages, wait for a NOTIFY, a poll
        interval or the deadline, and read again."""
        deadline = time.monotonic() + wait_seconds
        self._require_pool()  # a closed broker raises instead of returning at once, forever
        names = {self._pgmq_name(queue): queue for queue in queues}
        with self._translate():
            await self._ensure_queues(set(names))
        waiter = self._wakeup.waiter()
        while not self._closed and not waiter.interrupted:
            deliveries = await self._read(names, max_messages)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            await waiter.wait(min(remaining, self._poll_interval))
        return []

    async def _read(self, names: Mapping[str, str], max_messages: int) -> list[Delivery]:
        order = list(names.items())
        if not order:
            return []
        self._rotation = (self._rotation + 1) % len(order)
        order = order[self._rotation :] + order[: self._rotation]  # no queue starves the others
        deliveries: list[Delivery] = []
        try:
            with self._translate():
                async with self._require_pool().acquire() as connection:
                    for queue, polyqueue_queue in order:
                        rows = await self._read_queue(
                            connection, queue, max_messages - len(deliveries)
                        )
                        deliveries += [self._delivery(polyqueue_queue, row) for row in rows]
                        if len(deliveries) >= max_messages:
                            break
        except BrokerError:
            if self._closed:  # closed while reading: what was read comes back after its vt
                return []
            raise
        return deliveries

    async def _read_queue(self, connection: Any, queue: str, limit: int) -> list[Any]:
        """`pgmq.read` one queue; if what was done to its tables by hand makes it fail, repair
        that (log it, drop the rows PGMQ cannot read, create a lost table again) and read again.
        """
        try:
            rows: list[Any] = await connection.fetch(SQL["message_read"], queue, self._vt, limit)
        except asyncpg.UndefinedTableError:
            log.warning("PGMQ queue %r has no table (dropped by hand?): creating it again", queue)
            await connection.execute(SQL["queue_create"], queue)
        except asyncpg.NumericValueOutOfRangeError:
            dropped = await connection.fetch(statement("message_delete_unreadable", queue))
            log.warning(
                "dropping messages %s of PGMQ queue %r: their read_ct is at the integer limit, "
                "so pgmq.read fails on them",
                [row["msg_id"] for row in dropped],
                queue,
            )
        else:
            return rows
        again: list[Any] = await connection.fetch(SQL["message_read"], queue, self._vt, limit)
        return again

    @property
    def _vt(self) -> int:
        """PGMQ's `read` takes whole seconds: the lease, rounded up."""
        return max(1, math.ceil(self.lease_seconds))

    def _delivery(self, queue: str, row: Any) -> Delivery:
        body = decode_body(row["message"], row["headers"])
        receipt: Receipt = (row["msg_id"], row["read_ct"])
        return Delivery(self, queue, body, receipt)

    def interrupt(self) -> None:
        """Make receives waiting for a NOTIFY or their poll interval return `[]` at once."""
        self._wakeup.interrupt()

    def _on_notify(self, _channel: str, _payload: str) -> None:
        self._wakeup.wake()

    # -- settling -----------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete (or archive) the messages whose receipts still match."""
        block = "message_archive_many" if self._archive else "message_delete_many"
        await self._settle(block, deliveries)

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Make the messages visible again after `delay`; wake receivers if that is now."""
        await self._settle("message_set_vt_many", deliveries, max(delay, 0.0))
        if deliveries and delay <= 0:
            with self._translate():
                async with self._require_pool().acquire() as connection:
                    for queue in {self._pgmq_name(d.queue) for d in deliveries}:
                        await connection.execute(SQL["queue_notify"], CHANNEL, queue)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Keep the messages invisible for `seconds` from now (while their receipts match)."""
        await self._settle("message_set_vt_many", deliveries, seconds)

    async def _settle(self, block: str, deliveries: Sequence[Delivery], *args: float) -> None:
        receipts: dict[str, list[Receipt]] = defaultdict(list)
        for delivery in deliveries:
            receipts[self._pgmq_name(delivery.queue)].append(delivery.handle)
        if receipts:
            with self._translate():
                async with self._require_pool().acquire() as connection:
                    for queue, handles in receipts.items():
                        ids, read_counts = [h[0] for h in handles], [h[1] for h in handles]
                        with self._gone_with_their_table(queue):
                            await connection.execute(
                                statement(block, queue), ids, read_counts, *args
                            )

    # -- helpers ------------------------------------------------------------------------------

    def _pgmq_name(self, queue: str) -> str:
        return pgmq_queue_name(self._prefix, queue)

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise BrokerUnavailableError("the pgmq broker is not started or closed", broker="pgmq")
        return self._pool

    @contextlib.contextmanager
    def _forget_if_missing(self, queue: str) -> Iterator[None]:
        """A queue dropped by hand is created again by the next call that needs it."""
        try:
            yield
        except asyncpg.UndefinedTableError:
            self._known.discard(queue)
            self._tableless.add(queue)
            raise

    @contextlib.contextmanager
    def _gone_with_their_table(self, queue: str) -> Iterator[None]:
        """Settling messages of a queue whose table was dropped: they are gone already."""
        try:
            yield
        except asyncpg.UndefinedTableError:
            self._known.discard(queue)
            self._tableless.add(queue)
            log.warning("PGMQ queue %r has no table (dropped by hand?): messages gone", queue)

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        return translate_errors(
            "pgmq broker",
            unavailable=lambda message: BrokerUnavailableError(message, broker=self.name),
            refused=lambda message: BrokerError(message, broker=self.name),
        )


def _missing_message(url: str, available: bool) -> str:
    where = describe_url(url)
    how = (
        "run `CREATE EXTENSION pgmq` there (this server offers it)"
        if available
        else "this server has no pgmq extension"
    )
    return (
        f"PGMQ is not installed in {where}: {how}, or set {ENV_PREFIX}INSTALL=true to install "
        "it at start (the extension if offered, else the SQL-only PGMQ from the `pgmq` "
        "package), or call `await polyqueue_pgmq.install(connection)` once"
    )
