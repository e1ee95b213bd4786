"""The `Broker` interface: the doorbell that tells workers "job N is ready".

A broker carries opaque message bodies (the core encodes notices into them) between
`publish` and `receive`. A received message is a `Delivery`, owned by its receiver for a lease
(Redis lease, SQS visibility timeout, Service Bus lock, PGMQ vt) until it is acked, nacked or
the lease runs out, when it is delivered again. Brokers declare what they can do in
`Capabilities` instead of the core guessing.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from polyqueue.exceptions import UnsupportedCapabilityError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from polyqueue.job import ClaimedJob
    from polyqueue.settings import PolyqueueSettings

__all__ = [
    "Broker",
    "BrokerEnvironment",
    "Capabilities",
    "ClaimTerms",
    "ClaimedDelivery",
    "Colocation",
    "Delivery",
    "Message",
    "present",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do; the core adapts instead of probing."""

    max_batch: int = 100
    """Most messages one `publish` or `receive` call handles in one round trip."""
    native_delay: bool = False
    """`Message.delay` is honoured by the broker (otherwise the core's `scheduled` state is)."""
    max_delay_seconds: float = 0.0
    """Longest delay the broker honours natively."""
    priority: bool = False
    """`Message.priority` orders delivery within a queue."""
    transactional_publish: bool = False
    """`publish_in(connection, ...)` publishes inside the caller's PostgreSQL transaction."""
    transactional_ack: bool = False
    """`ack_in(connection, ...)` acks inside the transaction that records the outcomes (one
    commit for both, when the broker lives in the jobs database)."""
    in_process: bool = False
    """Messages never leave this process: producer and worker must share the app object."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish."""

    queue: str
    body: bytes
    priority: int = 0
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class BrokerEnvironment:
    """What a broker is built from: the app's settings and its resolved database."""

    settings: PolyqueueSettings
    database_url: str
    schema: str


class Delivery:
    """A received message, owned by its receiver until acked, nacked or its lease expires."""

    __slots__ = ("body", "broker", "handle", "queue")

    def __init__(self, broker: Broker, queue: str, body: bytes, handle: Any) -> None:
        self.broker = broker
        self.queue = queue
        self.body = body
        self.handle = handle
        """Broker-specific receipt (stream id, receipt handle, lock token, message id...)."""

    async def ack(self) -> None:
        """Remove the message for good."""
        await self.broker.ack([self])

    async def nack(self, delay: float = 0.0) -> None:
        """Give the message back, to be delivered again after `delay` seconds."""
        await self.broker.nack([self], delay)

    async def extend(self, seconds: float) -> None:
        """Keep owning the message for `seconds` more from now."""
        await self.broker.extend([self], seconds)

    def __repr__(self) -> str:
        return f"Delivery(queue={self.queue!r}, handle={self.handle!r})"


def present(deliveries: Iterable[Delivery | None]) -> list[Delivery]:
    """The deliveries that exist: a job started without a notice (flow control) has none."""
    return [delivery for delivery in deliveries if delivery is not None]


@dataclass(frozen=True, slots=True)
class Colocation:
    """What a broker whose messages live in the jobs database offers the core; returned by
    `Broker.colocation` when the broker shares the app's database and schema.

    Every colocated broker implements `receive_claiming`: the worker then leases notices and
    claims their jobs in one statement (one commit per pickup, not two), whatever the broker.
    """

    announce_channel: str | None = None
    """Set when the broker's messages are rows of the core's own `broker_messages` table (the
    built-in `postgres` broker): the job store then writes a job's notice in the statement
    that inserts the job, NOTIFYing this channel, and deletes it in the statement that
    records the outcome. None for a broker with tables of its own."""


@dataclass(frozen=True, slots=True)
class ClaimTerms:
    """On whose behalf `Broker.receive_claiming` claims jobs."""

    worker_id: str
    timeout_grace: float
    """Seconds added to a job's time limit for its `timeout_at` backstop."""
    held: Sequence[int]
    """Jobs this worker still holds an attempt of: their notices are returned unclaimed."""


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """One delivery of `Broker.receive_claiming`, with its job if the statement claimed it."""

    delivery: Delivery
    job: ClaimedJob | None
    """None when the message is not a notice, its job is held by this worker, or the job was
    not claimable (finished, or locked by a concurrent transaction): the worker then settles
    the delivery the way it settles any other."""


class Broker(abc.ABC):
    """Carries notices from producers to workers. Subclasses set `name` and `capabilities`.

    Contract, checked for every broker by `polyqueue.testing.contract.BrokerContract`:

    - `publish` is at-least-once: once it returns, every message will be received.
    - `receive` returns at most `max_messages` deliveries, waiting up to `wait_seconds` for
      the first; each is leased to this receiver for `lease_seconds`.
    - `ack`, `nack` and `extend` take deliveries of this broker; acking a delivery whose lease
      already expired (and that was redelivered) must not fail.
    - `close` releases every connection; a `receive` running at that moment returns.
    - `interrupt`, if implemented, makes receives that are waiting return `[]` now.
    """

    name: ClassVar[str]
    capabilities: Capabilities = Capabilities()
    """Class-wide usually; an instance may narrow it from its settings (e.g. a broker that is
    transactional only when it shares the jobs database)."""

    def __init__(self, *, lease_seconds: float = 30.0) -> None:
        self.lease_seconds = lease_seconds

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Build the broker; plugins read their own `POLYQUEUE_<NAME>_*` settings here."""
        return cls(lease_seconds=environment.settings.lease_seconds)

    async def start(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Open connections. Called once before any other method."""

    async def close(self) -> None:  # noqa: B027
        """Release every connection. Idempotent."""

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish `messages` (any number: split into batches of `capabilities.max_batch`)."""

    async def publish_in(self, connection: Any, messages: Sequence[Message]) -> None:  # noqa: ARG002
        """Publish inside the caller's PostgreSQL transaction on `connection`."""
        raise UnsupportedCapabilityError(
            f"broker {self.name!r} cannot publish inside a transaction", broker=self.name
        )

    async def ack_in(self, connection: Any, deliveries: Sequence[Delivery]) -> None:  # noqa: ARG002
        """Ack inside the caller's PostgreSQL transaction on `connection`."""
        raise UnsupportedCapabilityError(
            f"broker {self.name!r} cannot ack inside a transaction", broker=self.name
        )

    async def prepare_queue(self, queue: str) -> None:  # noqa: B027  (optional hook)
        """Make `queue` ready to carry notices, or raise `BrokerError` saying why it cannot
        (a name this broker refuses). The producer calls it before it inserts the first job
        of `queue` in the process, so a queue the broker cannot carry fails the enqueue
        before a row is written. The default accepts every queue."""

    def notice_sender(self, database_url: str, schema: str) -> str | None:  # noqa: ARG002
        """SQL with which the job store sends notices in the statement that inserts single
        jobs, for a broker whose messages live in the jobs database (`database_url`, jobs in
        `schema`); None (the default): notices are published apart.

        The SQL is a query on the relation `notices (queue text, job_id bigint, priority
        integer)`, the jobs the statement queued, that sends their notices (bodies as
        `polyqueue.notices.encode_notice` writes them) and returns the `job_id` of each notice
        it sent. The core publishes the notices it did not send after the commit. A single
        `enqueue` is then one statement and one commit, notice included."""
        return None

    async def unheld(self, messages: Sequence[Message]) -> list[Message]:
        """Of `messages`, those this broker does not hold already (published and not yet
        acked); the republisher rings only for those, so a long backlog does not pile up
        duplicate notices. A broker that cannot tell returns every message."""
        return list(messages)

    @abc.abstractmethod
    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Lease up to `max_messages` messages from `queues`, waiting up to `wait_seconds`."""

    def colocation(self, database_url: str, schema: str) -> Colocation | None:  # noqa: ARG002
        """What this broker offers when its messages live in the jobs database at
        `database_url` and `schema`; None (the default) for a broker elsewhere."""
        return None

    async def receive_claiming(
        self,
        queues: Sequence[str],  # noqa: ARG002
        *,
        max_messages: int,  # noqa: ARG002
        wait_seconds: float,  # noqa: ARG002
        terms: ClaimTerms,  # noqa: ARG002
    ) -> list[ClaimedDelivery]:
        """`receive`, and in the same statement the claim of each notice's job, as
        `polyqueue.sql.claim_fragments` writes it, for `terms.worker_id`. Required of a broker
        whose `colocation` is not None."""
        raise UnsupportedCapabilityError(
            f"broker {self.name!r} cannot claim jobs as it receives", broker=self.name
        )

    def interrupt(self) -> None:  # noqa: B027  (optional: a receive may wait out its time)
        """Make receives that are waiting right now return `[]` at once (a worker stopping).

        Synchronous and safe to call from a signal handler on the event loop. Receives that
        are mid round trip finish normally; later receives are not affected.
        """

    @abc.abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove delivered messages for good."""

    @abc.abstractmethod
    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Make delivered messages available again after `delay` seconds."""

    @abc.abstractmethod
    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Extend the lease of delivered messages to `seconds` from now."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
