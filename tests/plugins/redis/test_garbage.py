"""Garbage written by hand into the broker's keys: logged, dropped, never blocking or raising.

Every structure the broker keeps per queue gets some: members that are not UTF-8, ids
without a body, keys of the wrong type, priorities and sequences that are not numbers, stray
doorbell channels. Each test checks that receive, extend, nack, ack and publish go on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from polyqueue import JobStatus
from polyqueue.broker import Delivery, Message
from polyqueue.testing.helpers import eventually, running_worker
from polyqueue_redis import RedisBroker, RedisBrokerSettings
from polyqueue_redis.keys import QueueKeys

LEASE = 1.0
NOT_UTF8 = b"\x00\xffnot a notice"


def queue() -> str:
    return f"q_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def broker(redis_settings: RedisBrokerSettings) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_settings, lease_seconds=LEASE) as broker:
        yield broker


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="polyqueue_redis")
    return caplog


def warned(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def settle_every_way(broker: RedisBroker, deliveries: list[Delivery]) -> None:
    """Extend, nack, receive again and ack: none of it may raise."""
    await broker.extend(deliveries, LEASE)
    await broker.nack(deliveries)
    again = await broker.receive([deliveries[0].queue], max_messages=100, wait_seconds=5)
    assert sorted(d.body for d in again) == sorted(d.body for d in deliveries)
    await broker.ack(again)


async def test_a_member_that_is_not_utf8_is_delivered_and_acked(
    broker: RedisBroker, redis_client: Redis
) -> None:
    name = queue()
    keys = broker.keys.queue(name)
    await redis_client.hset(keys.bodies, NOT_UTF8, NOT_UTF8)
    await redis_client.zadd(keys.ready, {NOT_UTF8: 0})
    await broker.publish([Message(name, b"real")])
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert sorted(d.body for d in got) == [NOT_UTF8, b"real"]
    assert {d.handle[0] for d in got} >= {NOT_UTF8}  # the raw member, round-tripped
    await settle_every_way(broker, got)
    assert await _sizes(redis_client, keys) == [0, 0, 0, 0]


async def test_ids_without_a_body_are_logged_dropped_and_hide_nothing(
    redis_settings: RedisBrokerSettings, redis_client: Redis, warnings: pytest.LogCaptureFixture
) -> None:
    name = queue()
    settings = redis_settings.model_copy(update={"sweep_limit": 3})
    async with RedisBroker(settings, lease_seconds=LEASE) as broker:
        keys = broker.keys.queue(name)
        orphans = {b"\x00\xff%d" % i: -5 for i in range(20)}  # all ahead of the message
        await redis_client.zadd(keys.ready, orphans)
        await redis_client.zadd(keys.leased, {b"expired-orphan": 0})
        await redis_client.zadd(keys.delayed, {b"due-orphan": 0})
        await broker.publish([Message(name, b"real")])
        got = await broker.receive([name], max_messages=1, wait_seconds=30)  # one call
        assert [d.body for d in got] == [b"real"]
        await broker.ack(got)
        # the swept ones came back to ready behind it: the next receive drops them
        assert await broker.receive([name], max_messages=5, wait_seconds=0.2) == []
    assert await _sizes(redis_client, keys) == [0, 0, 0, 0]
    assert "had no body: dropped" in warned(warnings)
    assert "\\x00\\xff" in warned(warnings)  # the raw id, readable


KEY_KINDS = ["ready", "leased", "delayed", "bodies", "receipts", "priorities", "sequence"]


@pytest.mark.parametrize("key", KEY_KINDS)
@pytest.mark.parametrize("wrong", ["string", "list", "set"])
async def test_a_key_of_the_wrong_type_is_deleted_and_logged(
    broker: RedisBroker,
    redis_client: Redis,
    warnings: pytest.LogCaptureFixture,
    key: str,
    wrong: str,
) -> None:
    """What the garbage replaced is lost (the maintenance loop republishes lost notices, and
    the bodies of ids lost with a sorted set stay in the hash); everything else goes on."""
    name = queue()
    target = getattr(broker.keys.queue(name), key)
    wrong = "hash" if (wrong, key) == ("string", "sequence") else wrong
    await _write(redis_client, target, wrong)
    await broker.publish([Message(name, b"a", priority=2), Message(name, b"b")])
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert sorted(d.body for d in got) == [b"a", b"b"]
    await _write(redis_client, target, wrong)  # while they are leased
    await broker.extend(got, LEASE)
    await broker.nack(got)
    await _write(redis_client, target, wrong)
    left = await broker.receive([name], max_messages=5, wait_seconds=0.2)
    await broker.ack([*got, *left])
    await _write(redis_client, target, wrong)
    await broker.publish([Message(name, b"c")])
    later = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert b"c" in [d.body for d in later]
    await broker.ack(later)
    assert f"{target} held a {wrong}" in warned(warnings)


async def _write(client: Redis, key: str, kind: str) -> None:
    """Replace `key` with a value of `kind` (not what the broker keeps there)."""
    await client.delete(key)
    if kind == "string":
        await client.set(key, NOT_UTF8)
    elif kind == "list":
        await client.rpush(key, NOT_UTF8)
    elif kind == "set":
        await client.sadd(key, NOT_UTF8)
    else:
        await client.hset(key, NOT_UTF8, NOT_UTF8)


@pytest.mark.parametrize("priority", ["nan", "inf", "-inf", "not a number", NOT_UTF8, "1e999"])
async def test_a_priority_that_is_not_a_number_counts_as_zero(
    broker: RedisBroker,
    redis_client: Redis,
    warnings: pytest.LogCaptureFixture,
    priority: str | bytes,
) -> None:
    name = queue()
    keys = broker.keys.queue(name)
    await broker.publish([Message(name, b"first", priority=1), Message(name, b"second")])
    (first,) = await broker.receive([name], max_messages=1, wait_seconds=5)
    await redis_client.hset(keys.priorities, first.handle[0], priority)
    await broker.nack([first])  # back to ready, reading the priority
    await redis_client.hset(keys.priorities, first.handle[0], priority)
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert sorted(d.body for d in got) == [b"first", b"second"]
    await redis_client.hset(keys.priorities, got[0].handle[0], priority)
    await redis_client.zadd(keys.leased, {got[0].handle[0]: 0})  # its lease ran out
    again = await broker.receive([name], max_messages=5, wait_seconds=5)  # the sweep reads it
    await broker.ack([*got, *again])
    assert await _sizes(redis_client, keys) == [0, 0, 0, 0]
    assert "priority" in warned(warnings)


SEQUENCES = ["abc", "-5", "0", "007", "9223372036854775807", "1234567890123456789012", NOT_UTF8]


@pytest.mark.parametrize("sequence", [*SEQUENCES, None], ids=[*map(repr, SEQUENCES), "gone"])
async def test_a_sequence_that_is_not_an_id_restarts_from_the_clock(
    broker: RedisBroker,
    redis_client: Redis,
    warnings: pytest.LogCaptureFixture,
    sequence: str | bytes | None,
) -> None:
    name = queue()
    keys = broker.keys.queue(name)
    await broker.publish([Message(name, b"before")])
    if sequence is None:
        await redis_client.delete(keys.sequence)  # deleted, or evicted, with a message stored
    else:
        await redis_client.set(keys.sequence, sequence)
    await broker.publish([Message(name, b"%d" % n) for n in range(3)])
    got = await broker.receive([name], max_messages=10, wait_seconds=5)
    assert sorted(d.body for d in got) == [b"0", b"1", b"2", b"before"]  # no id was reused
    assert got[0].body == b"before"  # and the new ones still come after
    await settle_every_way(broker, got)
    assert "restarted from the clock" in warned(warnings)


async def test_scores_at_infinity_neither_raise_nor_block(
    broker: RedisBroker, redis_client: Redis
) -> None:
    name = queue()
    keys = broker.keys.queue(name)
    await redis_client.hset(keys.bodies, mapping={b"never": b"x", b"always": b"y"})
    await redis_client.zadd(keys.delayed, {b"never": float("inf")})
    await redis_client.zadd(keys.leased, {b"always": float("-inf")})
    await broker.publish([Message(name, b"real")])
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert sorted(d.body for d in got) == [b"real", b"y"]
    await broker.ack(got)
    assert await broker.receive([name], max_messages=5, wait_seconds=0.2) == []


async def test_a_doorbell_on_a_channel_that_is_not_utf8_is_ignored(
    broker: RedisBroker, redis_client: Redis, redis_settings: RedisBrokerSettings
) -> None:
    name = queue()
    stray = redis_settings.key_prefix.encode() + NOT_UTF8 + b":doorbell"
    waiting = asyncio.create_task(broker.receive([name], max_messages=5, wait_seconds=30))
    await eventually(lambda: _subscribers(redis_client, redis_settings.key_prefix))
    await redis_client.publish(stray, b"1")
    await redis_client.publish(broker.keys.queue(name).doorbell, b"1")  # behind the stray one
    async with RedisBroker(redis_settings) as producer:
        await producer.publish([Message(name, b"ring")])
    got = await asyncio.wait_for(waiting, 30)
    assert [d.body for d in got] == [b"ring"]
    await broker.ack(got)
    listener = broker._listener
    assert listener is not None
    assert not listener.done()  # the subscriber survived the stray channel


async def _subscribers(client: Redis, prefix: str) -> bool:
    return int(await client.execute_command("PUBSUB", "NUMPAT")) > 0


async def _sizes(client: Redis, keys: QueueKeys) -> list[int]:
    return [
        await client.zcard(keys.ready),
        await client.zcard(keys.leased),
        await client.zcard(keys.delayed),
        await client.hlen(keys.bodies),
    ]


class Item(BaseModel):
    n: int


async def test_a_worker_goes_past_garbage_in_every_structure(
    make_app, redis_url: str, redis_prefix: str, redis_client: Redis, monkeypatch
) -> None:
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", redis_url)
    monkeypatch.setenv("POLYQUEUE_REDIS_KEY_PREFIX", redis_prefix)
    app = make_app(queue_backend="redis")
    runs: Counter[int] = Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1

    async with app:
        assert isinstance(app.broker, RedisBroker)
        keys = app.broker.keys.queue(app.settings.default_queue)
        await redis_client.hset(keys.bodies, mapping={NOT_UTF8: NOT_UTF8, b"deep": b"[" * 100_000})
        await redis_client.zadd(keys.ready, {NOT_UTF8: 0, b"deep": 0, b"\xfe orphan": 0})
        await redis_client.hset(keys.priorities, NOT_UTF8, b"nan")
        await redis_client.set(keys.sequence, NOT_UTF8)
        await redis_client.rpush(keys.receipts, b"not a hash")
        await redis_client.set(keys.leased, b"not a zset")
        async with running_worker(app, concurrency=2):
            first = await app.enqueue("count", Item(n=1))
            assert (await app.wait_for(first, timeout=30)).status is JobStatus.SUCCEEDED
            # while the worker runs (a key whose loss costs no message: only priorities)
            await redis_client.set(keys.priorities, b"not a hash")
            second = await app.enqueue("count", Item(n=2))
            assert (await app.wait_for(second, timeout=30)).status is JobStatus.SUCCEEDED
            await eventually(lambda: _drained(redis_client, keys), timeout=30)
    assert runs == Counter({1: 1, 2: 1})


async def _drained(client: Redis, keys: QueueKeys) -> bool:
    return await _sizes(client, keys) == [0, 0, 0, 0]
