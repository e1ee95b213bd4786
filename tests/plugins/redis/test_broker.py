"""Redis-specific behaviour: registration, settings, auth, keys, receipts, waiting, orphans."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
import uuid

import pytest
from redis.asyncio import Redis
from redis_support import RedisServer

from polyqueue.broker import BrokerEnvironment, Message
from polyqueue.exceptions import BrokerUnavailableError, ConfigurationError
from polyqueue.plugins import create_plugin_manager, select_broker
from polyqueue.settings import PolyqueueSettings
from polyqueue.testing.helpers import eventually
from polyqueue_redis import RedisBroker, RedisBrokerSettings
from polyqueue_redis.settings import redact_url

LEASE = 1.0


def queue() -> str:
    return f"q_{uuid.uuid4().hex[:8]}"


def environment(**settings: object) -> BrokerEnvironment:
    return BrokerEnvironment(PolyqueueSettings(**settings), "postgresql://unused/db", "polyqueue")


# -- registration and settings ------------------------------------------------------------------


def test_the_entry_point_registers_the_redis_broker() -> None:
    assert select_broker(create_plugin_manager(), "redis") is RedisBroker


def test_hooks_import_no_redis_sdk() -> None:
    code = "import sys, polyqueue_redis.hooks; sys.exit('redis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_from_environment_reads_polyqueue_redis_variables(monkeypatch) -> None:
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", "rediss://:pw@example.com:6380/2")
    monkeypatch.setenv("POLYQUEUE_REDIS_KEY_PREFIX", "app1:")
    broker = RedisBroker.from_environment(environment(lease_seconds=7))
    assert broker.settings.url == "rediss://:pw@example.com:6380/2"
    assert broker.keys.queue("cpu").ready == "app1:cpu:ready"
    assert broker.lease_seconds == 7


def test_a_bad_setting_names_its_variable(monkeypatch) -> None:
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", "http://localhost:6379")
    with pytest.raises(ConfigurationError, match="POLYQUEUE_REDIS_URL"):
        RedisBroker.from_environment(environment())


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://user:s3cret@h:1/0") == "redis://user@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


async def test_start_fails_clearly_when_redis_is_unreachable(dedicated_redis) -> None:
    broker = RedisBroker(RedisBrokerSettings(url=dedicated_redis.url, connect_timeout=1))
    with pytest.raises(BrokerUnavailableError, match="POLYQUEUE_REDIS_URL"):
        await broker.start()


# -- auth ---------------------------------------------------------------------------------------


async def test_password_in_the_url_authenticates(dedicated_redis: RedisServer) -> None:
    dedicated_redis.password = secrets.token_hex(8)
    dedicated_redis.start()
    name = queue()
    async with RedisBroker(RedisBrokerSettings(url=dedicated_redis.url), lease_seconds=LEASE) as b:
        await b.publish([Message(name, b"x")])
        got = await b.receive([name], max_messages=1, wait_seconds=5)
        assert [d.body for d in got] == [b"x"]
        await b.ack(got)


async def test_a_wrong_password_fails_at_start_without_echoing_it(dedicated_redis) -> None:
    dedicated_redis.password = secrets.token_hex(8)
    dedicated_redis.start()
    wrong = secrets.token_hex(8)
    url = f"redis://:{wrong}@127.0.0.1:{dedicated_redis.port}/0"
    with pytest.raises(BrokerUnavailableError) as caught:
        await RedisBroker(RedisBrokerSettings(url=url)).start()
    assert wrong not in str(caught.value)


# -- keys, receipts, waiting --------------------------------------------------------------------


@pytest.fixture
async def broker(redis_settings: RedisBrokerSettings):
    async with RedisBroker(redis_settings, lease_seconds=LEASE) as broker:
        yield broker


async def test_every_key_lives_under_the_prefix_and_ack_cleans_up(
    broker: RedisBroker, redis_client: Redis, redis_prefix: str
) -> None:
    name = queue()
    await broker.publish([Message(name, b"a", priority=3), Message(name, b"b", delay=60)])
    got = await broker.receive([name], max_messages=10, wait_seconds=5)
    assert [d.body for d in got] == [b"a"]
    keys = [key.decode() async for key in redis_client.scan_iter(match=f"*{name}*")]
    assert keys
    assert all(key.startswith(redis_prefix) for key in keys)
    await broker.ack(got)
    k = broker.keys.queue(name)
    assert await redis_client.zcard(k.leased) == 0
    assert await redis_client.hlen(k.bodies) == 1  # only the delayed "b" is left
    assert await redis_client.zcard(k.delayed) == 1


async def test_a_stale_receipt_cannot_ack_extend_or_nack_the_redelivery(
    broker: RedisBroker, redis_client: Redis
) -> None:
    name = queue()
    await broker.publish([Message(name, b"job")])
    (first,) = await broker.receive([name], max_messages=1, wait_seconds=5)
    (second,) = await broker.receive([name], max_messages=1, wait_seconds=LEASE + 5)
    assert second.handle != first.handle
    await broker.ack([first])
    await broker.nack([first])
    await broker.extend([first], 0.0)
    assert await redis_client.zscore(broker.keys.queue(name).leased, second.handle[0]) is not None
    assert await broker.receive([name], max_messages=1, wait_seconds=0.3) == []
    await broker.ack([second])
    assert await redis_client.hlen(broker.keys.queue(name).bodies) == 0


async def test_settling_one_queue_is_one_script_call_and_several_one_pipeline(
    dedicated_redis: RedisServer,
) -> None:
    """A pipeline of scripts first sends SCRIPT EXISTS: one queue's ack, nack or extend is sent
    without one (one round trip per settle), and several queues' share one pipeline."""
    dedicated_redis.start()
    one, other = queue(), queue()
    async with RedisBroker(RedisBrokerSettings(url=dedicated_redis.url), lease_seconds=LEASE) as b:
        # every script once first: a script's first call is EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA
        await b.publish([Message(one, b"0")])
        warm = await b.receive([one], max_messages=1, wait_seconds=5)
        await b.extend(warm, LEASE)
        await b.nack(warm)
        await b.ack(await b.receive([one], max_messages=1, wait_seconds=5))
        admin = Redis.from_url(dedicated_redis.url)
        try:
            before = await _script_calls(admin)
            await b.publish([Message(one, b"1"), Message(one, b"2")])
            got = await b.receive([one], max_messages=2, wait_seconds=5)
            await b.extend(got, LEASE)
            await b.nack(got[:1])
            await b.ack(got[1:])
            assert await _script_calls(admin) == _plus(before, evalsha=5)
            await b.publish([Message(one, b"3"), Message(other, b"4")])  # one pipeline
            got = await b.receive([one, other], max_messages=5, wait_seconds=5)
            assert sorted(d.body for d in got) == [b"1", b"3", b"4"]
            await b.ack(got)  # one pipeline
            assert await _script_calls(admin) == _plus(before, evalsha=10, exists=2)
        finally:
            await admin.aclose()


async def _script_calls(client: Redis) -> dict[str, int]:
    """Calls so far of EVALSHA and SCRIPT EXISTS, from INFO commandstats."""
    stats = await client.info("commandstats")
    return {
        name: stats.get(key, {}).get("calls", 0)
        for key, name in (("cmdstat_evalsha", "evalsha"), ("cmdstat_script|exists", "exists"))
    }


def _plus(calls: dict[str, int], *, evalsha: int, exists: int = 0) -> dict[str, int]:
    return {"evalsha": calls["evalsha"] + evalsha, "exists": calls["exists"] + exists}


async def test_receive_returns_by_its_deadline(broker: RedisBroker) -> None:
    started = time.monotonic()
    assert await broker.receive([queue()], max_messages=5, wait_seconds=0.5) == []
    assert 0.45 <= time.monotonic() - started < 2.0


async def test_a_waiting_receive_wakes_on_a_publish_from_another_client(
    broker: RedisBroker, redis_settings: RedisBrokerSettings
) -> None:
    name = queue()
    waiting = asyncio.create_task(broker.receive([name], max_messages=5, wait_seconds=30))
    await asyncio.sleep(0.3)  # let it start waiting
    async with RedisBroker(redis_settings) as producer:
        started = time.monotonic()
        await producer.publish([Message(name, b"ring")])
        got = await asyncio.wait_for(waiting, 10)
    assert [d.body for d in got] == [b"ring"]
    assert time.monotonic() - started < 5  # woken by the doorbell, not by the 30 s timeout
    await broker.ack(got)


async def test_only_a_receiving_broker_subscribes_to_the_doorbells(
    broker: RedisBroker, redis_client: Redis
) -> None:
    """A producer is not sent a doorbell for every notice it publishes: the subscription
    starts with the first receive (and a receive racing it is rung once it is up)."""

    async def subscribed() -> bool:
        numsub = await redis_client.execute_command("PUBSUB", "NUMPAT")
        return bool(numsub > before)

    before = await redis_client.execute_command("PUBSUB", "NUMPAT")
    name = queue()
    await broker.publish([Message(name, b"first")])
    assert not await subscribed()
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert [d.body for d in got] == [b"first"]
    await eventually(subscribed)
    await broker.ack(got)


async def test_interrupt_returns_a_waiting_receive_and_not_the_next(broker: RedisBroker) -> None:
    name = queue()
    waiting = asyncio.create_task(broker.receive([name], max_messages=5, wait_seconds=30))
    await asyncio.sleep(0.3)  # let it start waiting
    broker.interrupt()
    assert await asyncio.wait_for(waiting, 10) == []  # not the 30 s wait
    await broker.publish([Message(name, b"after")])
    got = await broker.receive([name], max_messages=5, wait_seconds=10)
    assert [d.body for d in got] == [b"after"]
    await broker.ack(got)


async def test_native_delay_holds_the_message_back(broker: RedisBroker) -> None:
    name = queue()
    await broker.publish([Message(name, b"later", delay=1.0)])
    assert await broker.receive([name], max_messages=1, wait_seconds=0.5) == []
    got = await broker.receive([name], max_messages=1, wait_seconds=5)
    assert [d.body for d in got] == [b"later"]
    await broker.ack(got)


async def test_an_id_without_a_body_is_dropped(broker: RedisBroker, redis_client: Redis) -> None:
    name = queue()
    keys = broker.keys.queue(name)
    await redis_client.zadd(keys.ready, {"9999999999999999": 0})
    await broker.publish([Message(name, b"real")])
    got = await broker.receive([name], max_messages=5, wait_seconds=5)
    assert [d.body for d in got] == [b"real"]
    assert await redis_client.zcard(keys.ready) == 0
    await broker.ack(got)


async def test_one_receive_spans_several_queues_in_order(
    broker: RedisBroker, redis_client: Redis
) -> None:
    first, empty, second = queue(), queue(), queue()
    bodies = [b"2:", b"1\xff:9:x", b""]  # the reply packs lengths and colons: any bytes pass
    await broker.publish([Message(second, bodies[0]), Message(first, bodies[1])])
    await broker.publish([Message(second, bodies[2])])
    got = await broker.receive([first, empty, second], max_messages=5, wait_seconds=5)
    expected = [(first, bodies[1]), (second, bodies[0]), (second, bodies[2])]
    assert [(d.queue, d.body) for d in got] == expected
    await broker.ack(got)  # every receipt matches: nothing is left behind in either queue
    for name in (first, second):
        keys = broker.keys.queue(name)
        assert await redis_client.zcard(keys.leased) == await redis_client.hlen(keys.bodies) == 0


async def test_a_closed_broker_refuses_to_receive(redis_settings: RedisBrokerSettings) -> None:
    broker = RedisBroker(redis_settings)
    await broker.start()
    await broker.close()
    await broker.close()  # idempotent
    with pytest.raises(BrokerUnavailableError):
        await broker.receive([queue()], max_messages=1, wait_seconds=1)
