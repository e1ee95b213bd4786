"""`BrokerContract`: the conformance suite every broker runs unchanged.

Use it from a test module of your broker::

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        async def broker(self):
            async with MyBroker(lease_seconds=1.0) as broker:
                yield broker

The broker must be started, with a lease of about one second so expiry tests stay quick.
Every test uses fresh queue names, so brokers may share a server between tests.

Override `inject_raw` to run the garbage cases: it writes a message straight into the
broker's own storage (a member of a sorted set, a row of a table, a raw SDK send), bypassing
`publish`, the way a foreign producer or a hand edit would::

    async def inject_raw(self, broker, queue, body):
        await raw_client.add(queue, body)

A broker with a server also runs `ServerRestartContract`: a class of its own (or a second
base of the contract class) whose `broker` fixture is connected to a server the test may take
down. Override `restart_server`, an async context manager: the server is unreachable inside
the block and runs again, at the same address, once the block exits::

    class TestMyBrokerRestart(ServerRestartContract):
        durable = True  # unacked messages survive a restart of this server

        @contextlib.asynccontextmanager
        async def restart_server(self, broker):
            await asyncio.to_thread(server.stop)
            try:
                yield
            finally:
                await asyncio.to_thread(server.start)  # same port; wait until it listens

A real stop and start is best where it is cheap (the embedded PostgreSQL, a `redis-server` of
the test's own). Where it is not (a server other tests share, a server that would come back
without the state a real deployment keeps, a test double), a `FaultProxy` (from
`polyqueue.testing.proxy`) between broker and server, in `drop` mode inside the block, is an
outage too: every connection is reset and new ones are refused. A broker without a server
(the in-process one) does not include the class, so none of its cases is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from typing import TYPE_CHECKING, ClassVar, TypeVar

import pytest

from polyqueue.broker import Broker, Delivery, Message
from polyqueue.exceptions import BrokerError
from polyqueue.notices import InvalidNoticeError, decode_notice, notice_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence

__all__ = ["BrokerContract", "ServerRestartContract"]

T = TypeVar("T")

PATIENCE = 15.0  # seconds to wait for something that must happen (never the assertion itself)

GARBAGE = (
    b"\x00\xffnot a notice",
    b"",
    b"null",
    b"[" * 100_000,
    b"x" * (1 << 20),
    b'{"job_id": 0}',
    b'{"job_id": -3}',
    b'{"job_id": "7"}',
    b'{"job_id": 99999999999999999999999}',
)
"""Bodies that are not notices: not UTF-8, empty, nested too deep, huge, ids out of range."""


def _queue() -> str:
    return f"contract_{uuid.uuid4().hex[:12]}"


async def receive_until(
    broker: Broker, queues: Sequence[str], count: int, *, timeout: float = PATIENCE
) -> list[Delivery]:
    """Receive until `count` deliveries arrived or `timeout` passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (remaining := deadline - time.monotonic()) > 0:
        got += await broker.receive(
            queues, max_messages=count - len(got), wait_seconds=min(remaining, 1.0)
        )
    return got


async def receive_nothing(broker: Broker, queues: Sequence[str], seconds: float) -> bool:
    """True if nothing is delivered from `queues` during `seconds`."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if await broker.receive(queues, max_messages=10, wait_seconds=remaining):
            return False
    return True


async def drain_like_a_worker(broker: Broker, queues: Sequence[str], quiet: float) -> list[int]:
    """Consume as a worker does until nothing arrives for `quiet` seconds; the job ids seen.

    A notice is acked. Anything else is garbage: extended and nacked the first time its body
    is seen, acked the next. Whatever the garbage, receive, extend, nack and ack must not raise.
    """
    job_ids: list[int] = []
    nacked: set[bytes] = set()
    asked = set(queues)
    deadline = time.monotonic() + PATIENCE * 4
    last_seen = time.monotonic()
    while (now := time.monotonic()) - last_seen < quiet:
        assert now < deadline, "deliveries never stopped: acked garbage keeps coming back"
        got = await broker.receive(queues, max_messages=10, wait_seconds=min(quiet, 1.0))
        last_seen = time.monotonic() if got else last_seen
        for delivery in got:
            assert isinstance(delivery.body, bytes), f"a body of type {type(delivery.body)}"
            assert delivery.queue in asked, f"delivered from {delivery.queue!r}, not asked"
            try:
                job_ids.append(decode_notice(delivery.body))
            except InvalidNoticeError:
                if delivery.body not in nacked:
                    nacked.add(delivery.body)
                    await broker.extend([delivery], broker.lease_seconds)
                    await broker.nack([delivery])
                    continue
            await broker.ack([delivery])
    return job_ids


async def when_back(call: Callable[[], Awaitable[T]], *, timeout: float = PATIENCE) -> T:
    """`call()`, retried while it raises `BrokerError`, for up to `timeout` seconds.

    Right after its server comes back, a broker may fail a call or two on a connection that
    died with the old server; a worker retries those, and so does this.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except BrokerError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)


async def broker_outcome(
    call: Callable[[], Awaitable[T]], what: str, *, timeout: float = PATIENCE
) -> T | BrokerError:
    """What `call()` returned, or the `BrokerError` it raised. Any other exception, or no
    answer within `timeout` seconds, fails the test: a caller can only handle broker errors."""
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await call()
    except BrokerError as exc:
        return exc
    except Exception as exc:  # the point: nothing but BrokerError may escape
        if limit.expired():
            pytest.fail(f"{what} did not return within {timeout} s")
        pytest.fail(f"{what} raised {type(exc).__name__} (not a BrokerError): {exc}")


async def outage_seen_by_receive(
    broker: Broker, queues: Sequence[str]
) -> list[Delivery] | BrokerError:
    """Receive (each waiting half a second) until one raises `BrokerError`, for up to
    `PATIENCE` seconds: the error, or what the last receive returned.

    A receive may return (`[]`) while its round trip is still being retried, and raise at
    a later call; it must raise nothing but `BrokerError`.
    """
    deadline = time.monotonic() + PATIENCE
    while True:
        result = await broker_outcome(
            lambda: broker.receive(queues, max_messages=1, wait_seconds=0.5),
            "receive in an outage",
        )
        if isinstance(result, BrokerError) or time.monotonic() >= deadline:
            return result


async def receive_bodies(
    broker: Broker, queues: Sequence[str], wanted: Collection[bytes], *, timeout: float = PATIENCE
) -> list[bytes]:
    """Receive and ack until every body of `wanted` was delivered or `timeout` passed; every
    body delivered meanwhile, duplicates included. Broker errors are retried (`when_back`)."""
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not set(wanted) <= set(seen) and (remaining := deadline - time.monotonic()) > 0:
        receive = functools.partial(
            broker.receive, queues, max_messages=10, wait_seconds=min(remaining, 1.0)
        )
        got = await when_back(receive)
        seen += [delivery.body for delivery in got]
        await when_back(functools.partial(broker.ack, got))
    return seen


class BrokerContract:
    """Publish/consume, ack, nack with delay, lease expiry, extend, batches, close, garbage."""

    @pytest.fixture
    def broker(self) -> Broker:
        raise NotImplementedError("subclasses provide a started `broker` fixture")

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:  # noqa: ARG002
        """Write a message with `body` on `queue` straight into `broker`'s own storage.

        Bypass `publish`, as a foreign producer or a hand edit would. Storage that cannot
        hold `body` as it is (JSON, text) may hold a mangled form: the cases only need garbage
        there. Without an override, the garbage cases are skipped.
        """
        pytest.skip(f"{type(self).__name__} does not override inject_raw()")

    async def test_published_messages_are_received_once_each(self, broker: Broker) -> None:
        queue = _queue()
        bodies = [f"m{i}".encode() for i in range(5)]
        await broker.publish([Message(queue, body) for body in bodies])
        got = await receive_until(broker, [queue], 5)
        assert sorted(d.body for d in got) == sorted(bodies)
        assert {d.queue for d in got} == {queue}
        await broker.ack(got)

    async def test_receive_only_takes_the_asked_queues(self, broker: Broker) -> None:
        mine, other = _queue(), _queue()
        await broker.publish([Message(other, b"other"), Message(mine, b"mine")])
        got = await receive_until(broker, [mine], 1)
        assert [d.body for d in got] == [b"mine"]
        await broker.ack(got)
        assert await receive_nothing(broker, [mine], 0.3)
        await broker.ack(await receive_until(broker, [other], 1))

    async def test_receive_respects_max_messages(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"x%d" % i) for i in range(6)])
        await asyncio.sleep(0)  # let an asynchronous broker settle; not a timing assertion
        first = await broker.receive([queue], max_messages=2, wait_seconds=PATIENCE)
        assert 1 <= len(first) <= 2
        rest = await receive_until(broker, [queue], 6 - len(first))
        assert len(rest) == 6 - len(first)
        await broker.ack([*first, *rest])

    async def test_acked_messages_are_not_redelivered(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"once")])
        got = await receive_until(broker, [queue], 1)
        await broker.ack(got)
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 2 + 0.5)

    async def test_unacked_message_is_redelivered_after_its_lease(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"lease")])
        first = await receive_until(broker, [queue], 1)
        again = await receive_until(broker, [queue], 1)
        assert [d.body for d in again] == [b"lease"]
        await broker.ack(first)  # a stale receipt: must not fail
        await broker.ack(again)
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 2 + 0.5)

    async def test_nack_redelivers_after_the_delay(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"retry")])
        got = await receive_until(broker, [queue], 1)
        await broker.nack(got, delay=0.0)
        again = await receive_until(broker, [queue], 1)
        assert [d.body for d in again] == [b"retry"]
        delay = broker.lease_seconds * 3
        await broker.nack(again, delay=delay)
        started = time.monotonic()
        last = await receive_until(broker, [queue], 1, timeout=delay + PATIENCE)
        assert [d.body for d in last] == [b"retry"]
        assert time.monotonic() - started >= delay * 0.9
        await broker.ack(last)

    async def test_extend_keeps_the_message_owned(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"long job")])
        got = await receive_until(broker, [queue], 1)
        await broker.extend(got, broker.lease_seconds * 4)
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 2)
        await broker.ack(got)
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 3)

    async def test_batch_publish_delivers_every_message(self, broker: Broker) -> None:
        queue = _queue()
        count = broker.capabilities.max_batch * 2 + 7
        await broker.publish([Message(queue, b"%d" % i) for i in range(count)])
        got = await receive_until(broker, [queue], count, timeout=PATIENCE * 4)
        assert sorted(int(d.body) for d in got) == list(range(count))
        await broker.ack(got)

    async def test_priority_orders_delivery_when_declared(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish(
            [Message(queue, b"low", priority=0), Message(queue, b"high", priority=9)]
        )
        got = await receive_until(broker, [queue], 2)
        assert sorted(d.body for d in got) == [b"high", b"low"]  # both arrive, whatever order
        if broker.capabilities.priority:
            assert got[0].body == b"high"
        await broker.ack(got)

    async def test_interrupt_never_loses_a_message(self, broker: Broker) -> None:
        queue = _queue()
        waiting = asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=3))
        await asyncio.sleep(0.2)  # let the receive start waiting; the assertions are below
        broker.interrupt()
        early = await asyncio.wait_for(waiting, PATIENCE)
        await broker.publish([Message(queue, b"after")])
        got = [*early, *await receive_until(broker, [queue], 1 - len(early))]
        assert [d.body for d in got] == [b"after"]
        await broker.ack(got)

    async def test_interrupt_returns_waiting_receives_empty(self, broker: Broker) -> None:
        if type(broker).interrupt is Broker.interrupt:
            pytest.skip(f"{type(broker).__name__} does not implement the optional interrupt()")
        queue = _queue()
        waiting = [
            asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=3600))
            for _ in range(2)
        ]
        deadline = time.monotonic() + PATIENCE  # a bound against hanging: they wait an hour
        while not all(task.done() for task in waiting) and time.monotonic() < deadline:
            broker.interrupt()  # again until both were waiting when it came: no sleep races
            await asyncio.wait(waiting, timeout=0.1)
        assert all(task.done() for task in waiting), "interrupt() left a receive waiting"
        assert [task.result() for task in waiting] == [[], []]
        broker.interrupt()  # nobody waits: the next receive must not be affected
        await broker.publish([Message(queue, b"after")])
        got = await broker.receive([queue], max_messages=1, wait_seconds=PATIENCE)
        assert [d.body for d in got] == [b"after"]
        await broker.ack(got)

    async def test_a_cancelled_receive_loses_no_message(self, broker: Broker) -> None:
        """A receive cancelled at any point of its round trip (a worker's task cancelled)
        leaves the broker working, and what it leased comes back after the lease."""
        queue = _queue()
        await broker.publish([Message(queue, b"kept")])
        for pause in (0.0, 0.001, 0.01, 0.05, 0.2):  # cancelled at different points
            receiving = asyncio.create_task(
                broker.receive([queue], max_messages=1, wait_seconds=PATIENCE)
            )
            await asyncio.sleep(pause)
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving  # it may have finished first: its delivery is left unacked
        got = await receive_until(broker, [queue], 1, timeout=broker.lease_seconds + PATIENCE)
        assert [d.body for d in got] == [b"kept"]
        await broker.ack(got)
        waiting = asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=60))
        await asyncio.sleep(0.2)  # cancelled while waiting: it must not keep what comes next
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await broker.publish([Message(queue, b"after")])
        got = await receive_until(broker, [queue], 1)
        assert [d.body for d in got] == [b"after"]
        await broker.ack(got)

    async def test_garbage_in_the_queue_never_hides_a_notice(self, broker: Broker) -> None:
        queue = _queue()
        for body in GARBAGE:
            await self.inject_raw(broker, queue, body)
        await broker.publish([notice_message(42, queue)])
        for body in GARBAGE[:2]:  # garbage behind the notice too
            await self.inject_raw(broker, queue, body)
        assert await drain_like_a_worker(broker, [queue], broker.lease_seconds * 2 + 0.5) == [42]

    async def test_garbage_in_one_queue_never_blocks_another(self, broker: Broker) -> None:
        dirty, clean = _queue(), _queue()
        for body in GARBAGE:
            await self.inject_raw(broker, dirty, body)
        await broker.publish([notice_message(7, clean)])
        quiet = broker.lease_seconds * 2 + 0.5
        assert await drain_like_a_worker(broker, [dirty, clean], quiet) == [7]

    async def test_close_while_receiving_returns(self, broker: Broker) -> None:
        queue = _queue()
        waiting = asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=60))
        await asyncio.sleep(0.2)  # let the receive start waiting; the assertion is below
        await broker.close()
        result = await asyncio.wait_for(waiting, PATIENCE)
        assert result == []


class ServerRestartContract:
    """The broker's server stops and starts again: calls during the outage fail with
    `BrokerError` only, a receive waiting across it returns, and the broker recovers.

    Include it in the test class of a broker with a server (see the module docstring) and
    override `restart_server`. A broker without a server does not include it.
    """

    durable: ClassVar[bool] = True
    """Whether messages published and not yet acked survive a restart of the test's server.

    False for a server that legitimately loses them (Redis without persistence, an emulator
    that keeps its state in memory): the cases then only require that the broker recovers and
    delivers what is published after the restart. The core covers the lost notices: its
    republisher publishes again the notices of jobs still queued (`republish_after`).
    """

    @pytest.fixture
    def broker(self) -> Broker:
        raise NotImplementedError("subclasses provide a started `broker` fixture")

    def restart_server(self, broker: Broker) -> contextlib.AbstractAsyncContextManager[None]:
        """Take `broker`'s server down for the block; start it again when the block exits.

        Inside the block the server is unreachable: connections are refused or reset (a real
        stop, or a `FaultProxy` in `drop` mode). When the block exits, the server accepts
        connections again at the same address. Whether its messages survived is `durable`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} includes ServerRestartContract: override restart_server()"
        )

    async def test_unacked_messages_survive_a_restart_when_durable(self, broker: Broker) -> None:
        queue = _queue()
        before = {b"one", b"two"}
        await broker.publish([Message(queue, body) for body in sorted(before)])
        leased = await receive_until(broker, [queue], 1)  # one leased, the other ready
        assert len(leased) == 1
        async with self.restart_server(broker):
            pass
        await when_back(lambda: broker.publish([Message(queue, b"after")]))
        wanted = {*before, b"after"} if self.durable else {b"after"}
        seen = await receive_bodies(broker, [queue], wanted, timeout=PATIENCE * 2)
        assert wanted <= set(seen) <= {*before, b"after"}, seen
        await broker.ack(leased)  # a receipt from before the restart: must not fail
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 2 + 0.5)

    async def test_calls_during_an_outage_raise_broker_errors(self, broker: Broker) -> None:
        queue = _queue()
        await broker.publish([Message(queue, b"before")])
        got = await receive_until(broker, [queue], 1)
        assert len(got) == 1
        async with self.restart_server(broker):
            published = await broker_outcome(
                lambda: broker.publish([Message(queue, b"refused")]), "publish in an outage"
            )
            received = await outage_seen_by_receive(broker, [queue])
            # Settling may fail or not (the message is then delivered again): never otherwise.
            await broker_outcome(lambda: broker.extend(got, 5.0), "extend in an outage")
            await broker_outcome(lambda: broker.nack(got), "nack in an outage")
            acked = await broker_outcome(lambda: broker.ack(got), "ack in an outage")
        assert isinstance(published, BrokerError), f"publish in an outage returned {published!r}"
        assert isinstance(received, BrokerError), (
            f"receives kept returning during an outage of {PATIENCE} s, last {received!r}:"
            " the caller never learns that the broker is down"
        )
        await when_back(lambda: broker.publish([Message(queue, b"after")]))
        # An ack that returned may have been queued and sent since: then "before" may be gone.
        kept = self.durable and isinstance(acked, BrokerError)
        wanted = {b"before", b"after"} if kept else {b"after"}
        seen = await receive_bodies(broker, [queue], wanted, timeout=PATIENCE * 2)
        assert wanted <= set(seen) <= {b"before", b"refused", b"after"}, seen

    async def test_a_receive_waiting_across_a_restart_returns(self, broker: Broker) -> None:
        queue = _queue()
        wait = 5.0
        waiting = asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=wait))
        await asyncio.sleep(0.2)  # let the receive start waiting; the assertions are below
        async with self.restart_server(broker):
            await asyncio.sleep(0.5)  # the receive now waits on a server that is gone
        await when_back(lambda: broker.publish([Message(queue, b"after")]))
        result = await broker_outcome(
            lambda: waiting, "a receive waiting across a restart", timeout=wait + PATIENCE
        )
        early = result if isinstance(result, list) else []  # or a BrokerError: retried
        seen = [d.body for d in early]
        await broker.ack(early)
        if not early:
            seen += await receive_bodies(broker, [queue], {b"after"})
        assert seen == [b"after"]
        assert await receive_nothing(broker, [queue], broker.lease_seconds * 2 + 0.5)
