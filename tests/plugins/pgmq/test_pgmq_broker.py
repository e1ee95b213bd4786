"""PGMQ specifics: receipts guarded by read_ct, archive, bodies, waking, queue names."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
from pgmq_support import count_messages, queue_table

from polyqueue import BrokerError, Message
from polyqueue.notices import decode_notice, encode_notice
from polyqueue.testing.contract import receive_until
from polyqueue_pgmq import PgmqBroker

QUEUE = "work"


async def test_a_stale_ack_leaves_the_redelivered_message(
    broker: PgmqBroker, pgmq_database: str, pgmq_prefix: str
) -> None:
    await broker.publish([Message(QUEUE, b"job")])
    (first,) = await receive_until(broker, [QUEUE], 1)
    (again,) = await receive_until(broker, [QUEUE], 1)  # the lease ran out: read again
    assert first.handle[0] == again.handle[0] and again.handle[1] == first.handle[1] + 1
    await broker.ack([first])
    await broker.nack([first], delay=0)  # stale too: must not make it visible to others
    assert await count_messages(pgmq_database, pgmq_prefix + QUEUE) == 1
    assert await broker.receive([QUEUE], max_messages=1, wait_seconds=0.3) == []
    await broker.ack([again])
    assert await count_messages(pgmq_database, pgmq_prefix + QUEUE) == 0


async def test_a_stale_extend_does_not_hide_the_redelivered_message(broker: PgmqBroker) -> None:
    await broker.publish([Message(QUEUE, b"job")])
    (first,) = await receive_until(broker, [QUEUE], 1)
    (again,) = await receive_until(broker, [QUEUE], 1)
    await broker.nack([again], delay=0)
    await broker.extend([first], 60)  # stale: ignored
    (third,) = await receive_until(broker, [QUEUE], 1, timeout=5)
    await broker.ack([third])


async def test_acks_archive_when_asked(pgmq_database: str, pgmq_prefix: str) -> None:
    async with PgmqBroker(pgmq_database, queue_prefix=pgmq_prefix, archive=True) as broker:
        await broker.publish([Message(QUEUE, b"a"), Message(QUEUE, b"b")])
        got = await receive_until(broker, [QUEUE], 2)
        await broker.ack(got)
    assert await count_messages(pgmq_database, pgmq_prefix + QUEUE) == 0
    assert await count_messages(pgmq_database, pgmq_prefix + QUEUE, kind="a") == 2


BODIES = [
    b'{"job_id":42}',
    b"plain text",
    b"7",
    b'"quoted"',
    b"caf\xc3\xa9 \xe2\x98\x83",
    b"\x00\x01\xff binary",
    b'{"a": "\\u0000"}',
    b'{"a": NaN}',
    b"",
    b"[1, 2]",
]


async def test_every_body_comes_back(broker: PgmqBroker) -> None:
    await broker.publish([Message(QUEUE, body) for body in BODIES])
    got = await receive_until(broker, [QUEUE], len(BODIES))
    by_id = sorted(got, key=lambda d: d.handle[0])
    assert json.loads(by_id[0].body) == {"job_id": 42}  # stored as JSON: same meaning
    assert [d.body for d in by_id[1:]] == BODIES[1:]  # anything else: the same bytes
    await broker.ack(got)


async def test_notices_are_readable_json_in_pgmq(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str
) -> None:
    await broker.publish([Message(QUEUE, b'{"job_id":42}')])
    row = await db.fetchrow(f"SELECT message, headers FROM {queue_table(pgmq_prefix + QUEUE)}")
    assert json.loads(row["message"]) == {"job_id": 42}
    assert row["headers"] is None


async def test_messages_sent_by_hand_arrive_as_their_json(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str
) -> None:
    await broker.publish([Message(QUEUE, b"create the queue")])
    await broker.ack(await receive_until(broker, [QUEUE], 1))
    queue = pgmq_prefix + QUEUE
    await db.execute("SELECT pgmq.send($1, '{\"job_id\": 5}'::jsonb)", queue)
    await db.execute(
        "SELECT pgmq.send($1, $2::text::jsonb, $3::text::jsonb)",
        queue,
        '"%%%"',
        '{"polyqueue_encoding": "base64"}',
    )
    got = await receive_until(broker, [QUEUE], 2)
    assert sorted(d.body for d in got) == [b'"%%%"', b'{"job_id": 5}']
    await broker.ack(got)


async def test_a_notify_wakes_a_waiting_receive(pgmq_database: str, pgmq_prefix: str) -> None:
    slow = PgmqBroker(pgmq_database, queue_prefix=pgmq_prefix, poll_interval=60)
    async with slow, PgmqBroker(pgmq_database, queue_prefix=pgmq_prefix) as other:
        waiting = asyncio.create_task(slow.receive([QUEUE], max_messages=1, wait_seconds=30))
        await asyncio.sleep(0.3)  # let it wait; the assertion is below
        started = time.monotonic()
        await other.publish([Message(QUEUE, b"ding")])
        got = await asyncio.wait_for(waiting, 30)
        assert [d.body for d in got] == [b"ding"]
        assert time.monotonic() - started < 10  # far below the 60 s poll interval
        await slow.ack(got)


async def test_interrupt_returns_a_waiting_receive_and_not_the_next(broker: PgmqBroker) -> None:
    waiting = asyncio.create_task(broker.receive([QUEUE], max_messages=5, wait_seconds=30))
    await asyncio.sleep(0.3)  # let it start waiting
    broker.interrupt()
    assert await asyncio.wait_for(waiting, 10) == []  # not the 30 s wait
    await broker.publish([Message(QUEUE, b'{"after": 1}')])
    got = await broker.receive([QUEUE], max_messages=5, wait_seconds=10)
    assert [json.loads(d.body) for d in got] == [{"after": 1}]
    await broker.ack(got)


async def test_native_delay(broker: PgmqBroker) -> None:
    await broker.publish([Message(QUEUE, b"later", delay=2.0)])
    started = time.monotonic()
    got = await receive_until(broker, [QUEUE], 1)
    assert time.monotonic() - started >= 1.8
    await broker.ack(got)


async def test_receive_reads_several_queues_without_exceeding_max(broker: PgmqBroker) -> None:
    await broker.publish([Message(q, b"x") for q in ("a", "b", "c") for _ in range(3)])
    got = await broker.receive(["a", "b", "c"], max_messages=4, wait_seconds=5)
    assert len(got) == 4
    rest = await receive_until(broker, ["a", "b", "c"], 5)
    assert sorted(d.queue for d in [*got, *rest]) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    await broker.ack([*got, *rest])


@pytest.mark.parametrize("queue", ["Upper", "dotted.name", "x" * 60, "semi;colon"])
async def test_queue_names_pgmq_cannot_hold_are_refused(broker: PgmqBroker, queue: str) -> None:
    with pytest.raises(BrokerError, match="cannot be a PGMQ queue"):
        await broker.publish([Message(queue, b"x")])


async def test_a_queue_dropped_by_hand_is_created_again(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str
) -> None:
    await broker.publish([Message(QUEUE, b"one")])
    await db.execute("SELECT pgmq.drop_queue($1)", pgmq_prefix + QUEUE)
    with pytest.raises(BrokerError, match="does not exist"):
        await broker.publish([Message(QUEUE, b"lost")])
    await broker.publish([Message(QUEUE, b"two")])
    assert [d.body for d in await receive_until(broker, [QUEUE], 1)] == [b"two"]


async def test_unheld_names_the_notices_the_queue_no_longer_holds(broker: PgmqBroker) -> None:
    """What the republisher asks before it rings again: a notice still in the queue (even
    leased) is held; an acked one, one never sent, and one of a queue without a table are
    not."""
    kept, acked, never = (Message(QUEUE, encode_notice(n)) for n in (1, 2, 3))
    elsewhere = Message("nowhere", encode_notice(4))
    await broker.publish([kept, acked])
    deliveries = await receive_until(broker, [QUEUE], 2)
    await broker.ack([d for d in deliveries if decode_notice(d.body) == 2])
    assert await broker.unheld([kept, acked, never, elsewhere]) == [acked, never, elsewhere]
    assert await broker.unheld([]) == []
