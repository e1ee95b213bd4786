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
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from polyqueue.broker import Broker, Delivery, Message
from polyqueue.notices import InvalidNoticeError, decode_notice, notice_message

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BrokerContract"]

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
    deadline = time.monotonic() + PATIENCE * 4
    last_seen = time.monotonic()
    while (now := time.monotonic()) - last_seen < quiet:
        assert now < deadline, "deliveries never stopped: acked garbage keeps coming back"
        got = await broker.receive(queues, max_messages=10, wait_seconds=min(quiet, 1.0))
        last_seen = time.monotonic() if got else last_seen
        for delivery in got:
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

    async def test_garbage_in_the_queue_never_hides_a_notice(self, broker: Broker) -> None:
        queue = _queue()
        for body in GARBAGE:
            await self.inject_raw(broker, queue, body)
        await broker.publish([notice_message(42, queue)])
        for body in GARBAGE[:2]:  # garbage behind the notice too
            await self.inject_raw(broker, queue, body)
        assert await drain_like_a_worker(broker, [queue], broker.lease_seconds * 2 + 0.5) == [42]

    async def test_close_while_receiving_returns(self, broker: Broker) -> None:
        queue = _queue()
        waiting = asyncio.create_task(broker.receive([queue], max_messages=1, wait_seconds=60))
        await asyncio.sleep(0.2)  # let the receive start waiting; the assertion is below
        await broker.close()
        result = await asyncio.wait_for(waiting, PATIENCE)
        assert result == []
