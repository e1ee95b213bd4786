"""`Runtime`: the pieces a started app works with, handed to workers, maintenance and the
scheduler.

`Polyqueue.start()` builds one with `open_runtime` and `Polyqueue.close()` ends it with
`close_runtime`. Everything below the app (the worker, maintenance, the scheduler, the
outcome writer) takes the runtime or some of its pieces, never the app, so imports run one
way: `app` → `worker` → the runtime's pieces.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polyqueue.broker import BrokerEnvironment
from polyqueue.listener import Listener
from polyqueue.migrations import migrate_all
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.producer import Producer
from polyqueue.publisher import NoticePublisher
from polyqueue.store import JobStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import pluggy
    from pydantic import BaseModel

    from polyqueue.broker import Broker
    from polyqueue.cron import CronSchedule
    from polyqueue.handlers import Handler
    from polyqueue.limits import Limits
    from polyqueue.serializers import Serializer
    from polyqueue.settings import PolyqueueSettings
    from polyqueue.sql import MigrationLine

__all__ = ["Runtime", "RuntimeParts", "close_runtime", "open_runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeParts:
    """What an app knows before it starts: its settings, plugins and registrations."""

    settings: PolyqueueSettings
    database_url: str
    plugin_manager: pluggy.PluginManager
    broker_class: type[Broker]
    serializer: Serializer
    handlers: Mapping[str, Handler]
    """The app's own registry: handlers registered after start are seen too."""
    cron_schedules: Mapping[str, CronSchedule]
    migration_lines: Sequence[MigrationLine]
    limits: Mapping[str, Limits] = field(default_factory=dict)
    """Flow-control limits by handler name, declared by every worker as it starts."""
    key_functions: Mapping[str, Callable[[BaseModel], str]] = field(default_factory=dict)
    """How each handler with a `concurrency_key` computes a payload's key."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """A started app's store, broker, publisher and producer, with what they were built
    from. Workers, maintenance and the scheduler read everything they need from here."""

    parts: RuntimeParts
    store: JobStore
    broker: Broker
    publisher: NoticePublisher
    producer: Producer
    outbox: OutboxRelay | None
    """Relays notices of jobs enqueued in a caller's transaction (brokers that cannot
    publish inside a PostgreSQL transaction); None otherwise."""

    @property
    def settings(self) -> PolyqueueSettings:
        """The app's settings."""
        return self.parts.settings

    @property
    def handlers(self) -> Mapping[str, Handler]:
        """The registered handlers by name."""
        return self.parts.handlers

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The app's plugin manager (metrics hooks, middleware...)."""
        return self.parts.plugin_manager

    @property
    def database_url(self) -> str:
        """The jobs database (the embedded server's when no `database_url` is set)."""
        return self.parts.database_url

    @property
    def cancel_channel(self) -> str:
        """The NOTIFY channel on which operators tell workers to stop jobs."""
        return cancel_channel(self.settings)


def cancel_channel(settings: PolyqueueSettings) -> str:
    """The NOTIFY channel of the schema's "stop these jobs" messages."""
    return f"{settings.schema_name}_cancel"


async def open_runtime(parts: RuntimeParts) -> Runtime:
    """Open the store, migrate, start the broker, the publisher, the producer and (for a
    broker that cannot publish in a transaction) the outbox relay. On failure, whatever was
    opened is closed again."""
    settings = parts.settings
    store = JobStore(
        parts.database_url,
        settings.schema_name,
        pool_size=settings.pool_max_size or max(10, settings.concurrency + 4),
        options=ConnectionOptions.from_settings(settings),
    )
    await store.open()
    broker: Broker | None = None
    try:
        async with store.migration_connection() as connection:
            await migrate_all(connection, settings.schema_name, parts.migration_lines)
        environment = BrokerEnvironment(settings, parts.database_url, settings.schema_name)
        broker = parts.broker_class.from_environment(environment)
        await broker.start()
        publisher = NoticePublisher(broker)
        colocation = broker.colocation(store.url, store.schema)
        notice_sender = broker.notice_sender(store.url, store.schema)
        if notice_sender is not None:
            store.send_notices_with(notice_sender)
        producer = Producer(
            store,
            broker,
            publisher,
            handlers=parts.handlers,
            settings=settings,
            outbox_channel=f"pq_outbox_{uuid.uuid4().hex[:16]}",
            announce_channel=None if colocation is None else colocation.announce_channel,
            key_functions=parts.key_functions,
        )
        outbox = None
        if not broker.capabilities.transactional_publish:
            outbox = OutboxRelay(producer, parts.database_url, store)
            await outbox.start()
    except BaseException:
        if broker is not None:
            await broker.close()
        await store.close()
        raise
    return Runtime(parts, store, broker, publisher, producer, outbox)


async def close_runtime(runtime: Runtime) -> None:
    """Wait for the producer's shared inserts, stop the outbox relay, flush what the
    publisher can, close the broker and the store."""
    await runtime.producer.close()
    if runtime.outbox is not None:
        await runtime.outbox.close()
    await runtime.publisher.close()
    await runtime.broker.close()
    await runtime.store.close()


class OutboxRelay:
    """Publishes the notices of jobs committed in a caller's transaction: the producer
    NOTIFYs its outbox channel in that transaction, PostgreSQL delivers the notification only
    on commit, and this relay publishes the notices then."""

    def __init__(self, producer: Producer, database_url: str, store: JobStore) -> None:
        self._producer = producer
        self._listener = Listener(
            database_url, [producer.outbox_channel], self._relay, options=store.options
        )
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening on the producer's outbox channel."""
        await self._listener.start()

    async def close(self) -> None:
        """Stop listening and wait for the relays under way."""
        await self._listener.close()
        if self._relays:
            await asyncio.gather(*self._relays, return_exceptions=True)

    def _relay(self, _channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self._producer.relay_outbox(payload))
        self._relays.add(task)
        task.add_done_callback(self._relay_done)

    def _relay_done(self, task: asyncio.Task[None]) -> None:
        self._relays.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The jobs are committed: the republisher rings for them if this relay failed.
            log.error("relaying outbox notices failed", exc_info=exc)
