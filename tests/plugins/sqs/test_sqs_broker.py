"""SQS-specific behaviour: settings, queue names and URLs, errors, deadlines, FIFO entries."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqs_support import CallCounter, queue_counts

from polyqueue.broker import Message
from polyqueue.exceptions import (
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    UnsupportedCapabilityError,
)
from polyqueue.notices import encode_notice
from polyqueue.testing.contract import receive_until
from polyqueue.testing.helpers import eventually
from polyqueue.testing.processes import free_port
from polyqueue_sqs import SqsBroker, SqsBrokerSettings
from polyqueue_sqs import broker as broker_module
from polyqueue_sqs.entries import long_poll_seconds, send_entry, sqs_queue_name, whole_seconds
from polyqueue_sqs.settings import load_sqs_settings


def test_settings_errors_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("POLYQUEUE_SQS_WAIT_TIME_SECONDS", "30")
    with pytest.raises(ConfigurationError, match="POLYQUEUE_SQS_WAIT_TIME_SECONDS"):
        load_sqs_settings()
    monkeypatch.delenv("POLYQUEUE_SQS_WAIT_TIME_SECONDS")
    monkeypatch.setenv("POLYQUEUE_SQS_CREATE_QUEUES", "perhaps")
    with pytest.raises(ConfigurationError, match="POLYQUEUE_SQS_CREATE_QUEUES"):
        load_sqs_settings()


def test_defaults_are_safe_for_production() -> None:
    settings = SqsBrokerSettings()
    assert settings.create_queues is False
    assert settings.fifo is False
    assert settings.wait_time_seconds == 20


def test_queue_names() -> None:
    assert sqs_queue_name(SqsBrokerSettings(queue_prefix="app-"), "cpu") == "app-cpu"
    fifo = SqsBrokerSettings(queue_prefix="app-", fifo=True)
    assert sqs_queue_name(fifo, "cpu") == "app-cpu.fifo"
    with pytest.raises(BrokerError, match="POLYQUEUE_SQS_QUEUE_PREFIX"):
        sqs_queue_name(SqsBrokerSettings(), "images.resize")
    with pytest.raises(BrokerError):
        sqs_queue_name(SqsBrokerSettings(), "x" * 80)


def test_rounding_to_sqs_whole_seconds() -> None:
    assert whole_seconds(0.1, 43_200) == 1
    assert whole_seconds(0.0, 43_200) == 0
    assert whole_seconds(10**6, 43_200) == 43_200
    assert long_poll_seconds(1.0, 20) == 1
    assert long_poll_seconds(0.99, 20) == 1
    assert long_poll_seconds(0.3, 20) == 0
    assert long_poll_seconds(60, 20) == 20


def test_fifo_entries_group_by_job_and_never_deduplicate_a_republish() -> None:
    settings = SqsBrokerSettings(fifo=True)
    message = Message("default", encode_notice(42))
    first, again = send_entry(0, message, settings), send_entry(0, message, settings)
    assert first["MessageGroupId"] == again["MessageGroupId"] == "job-42"
    assert first["MessageDeduplicationId"] != again["MessageDeduplicationId"]
    by_queue = SqsBrokerSettings(fifo=True, fifo_group="queue")
    assert send_entry(0, message, by_queue)["MessageGroupId"] == "default"
    with pytest.raises(UnsupportedCapabilityError):
        send_entry(0, Message("default", b"x", delay=5), settings)


def test_standard_entries_delay_natively_up_to_fifteen_minutes() -> None:
    settings = SqsBrokerSettings()
    assert send_entry(0, Message("q", b"x", delay=1.5), settings)["DelaySeconds"] == 2
    with pytest.raises(UnsupportedCapabilityError):
        send_entry(0, Message("q", b"x", delay=901), settings)


def test_capabilities_per_instance() -> None:
    standard = SqsBroker(SqsBrokerSettings())
    fifo = SqsBroker(SqsBrokerSettings(fifo=True))
    assert standard.capabilities.native_delay
    assert standard.capabilities.max_delay_seconds == 900
    assert standard.capabilities.max_batch == 10
    assert not fifo.capabilities.native_delay
    assert SqsBroker.capabilities.native_delay  # the class default is untouched


def test_visibility_timeout_defaults_to_the_lease() -> None:
    assert SqsBroker(SqsBrokerSettings(), lease_seconds=7).visibility_timeout == 7
    settings = SqsBrokerSettings(visibility_timeout=90)
    assert SqsBroker(settings, lease_seconds=7).visibility_timeout == 90


async def test_missing_queue_without_create_names_the_variable(sqs_settings) -> None:
    settings = sqs_settings.model_copy(update={"create_queues": False})
    async with SqsBroker(settings, lease_seconds=1) as broker:
        with pytest.raises(BrokerError, match="POLYQUEUE_SQS_CREATE_QUEUES"):
            await broker.publish([Message("absent", b"x")])


async def test_queue_urls_are_resolved_once(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        counter = CallCounter()
        counter.attach(broker.client.raw)
        for _ in range(3):
            await broker.publish([Message("cached", b"x")])
        assert counter.calls == {"CreateQueue": 1, "SendMessageBatch": 3}  # no GetQueueUrl
    settings = sqs_settings.model_copy(update={"create_queues": False})
    async with SqsBroker(settings, lease_seconds=1) as broker:
        counter = CallCounter()
        counter.attach(broker.client.raw)
        await broker.publish([Message("cached", b"y")])
        await broker.publish([Message("cached", b"z")])
        assert counter.calls == {"GetQueueUrl": 1, "SendMessageBatch": 2}


async def test_an_existing_queue_with_other_attributes_is_used(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        name = sqs_queue_name(sqs_settings, "declared")
        await broker.client.raw.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})
        counter = CallCounter()
        counter.attach(broker.client.raw)
        await broker.publish([Message("declared", b"x")])  # CreateQueue refused: GetQueueUrl
        assert counter.calls == {"CreateQueue": 1, "GetQueueUrl": 1, "SendMessageBatch": 1}
        got = await broker.receive(["declared"], max_messages=10, wait_seconds=5)
        assert [d.body for d in got] == [b"x"]
        await broker.ack(got)


async def test_publish_sends_batches_of_ten(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        await broker.publish([Message("tens", b"warm")])
        counter = CallCounter()
        counter.attach(broker.client.raw)
        await broker.publish([Message("tens", b"%d" % i) for i in range(25)])
        assert counter.calls["SendMessageBatch"] == 3


async def test_a_deleted_queue_is_resolved_again(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        await broker.publish([Message("gone", b"1")])
        url = await broker.client.queue_url("gone")
        await broker.client.raw.delete_queue(QueueUrl=url)
        with pytest.raises(BrokerError):
            await broker.publish([Message("gone", b"2")])
        await broker.publish([Message("gone", b"3")])  # cache dropped, queue created again
        got = await broker.receive(["gone"], max_messages=10, wait_seconds=5)
        assert [d.body for d in got] == [b"3"]


async def test_receive_returns_by_its_deadline(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        await broker.publish([Message("idle", b"warm")])
        await broker.ack(await broker.receive(["idle"], max_messages=1, wait_seconds=5))
        for wait in (0.3, 1.0, 2.5):
            started = time.monotonic()
            assert await broker.receive(["idle"], max_messages=1, wait_seconds=wait) == []
            assert time.monotonic() - started < wait + 0.6


async def test_many_queues_never_exceed_max_messages(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        await broker.publish([Message(q, b"%d" % i) for q in ("a", "b") for i in range(5)])
        got = await broker.receive(["a", "b"], max_messages=3, wait_seconds=5)
        assert 1 <= len(got) <= 3
        await broker.ack(got)
        rest = []
        deadline = time.monotonic() + 15
        while len(rest) < 10 - len(got) and time.monotonic() < deadline:
            rest += await broker.receive(["a", "b"], max_messages=10, wait_seconds=1)
        assert len(rest) == 10 - len(got)  # the surplus was held or released, never kept
        await broker.ack(rest)


async def test_a_receive_over_several_queues_returns_with_the_first_messages(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=30) as broker:
        await broker.publish([Message("busy", b"x")])
        started = time.monotonic()
        got = await broker.receive(["idle", "busy"], max_messages=10, wait_seconds=20)
        assert [d.body for d in got] == [b"x"]
        assert time.monotonic() - started < 10  # not after the idle queue's 20 s long poll
        await broker.ack(got)


async def test_messages_beyond_max_messages_wait_for_the_next_receive(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=30) as broker:
        await broker.publish([Message("a", b"a"), Message("b", b"b")])
        first = await broker.receive(["a", "b"], max_messages=1, wait_seconds=5)
        counter = CallCounter()
        counter.attach(broker.client.raw)
        second = await broker.receive(["a", "b"], max_messages=1, wait_seconds=5)
        assert sorted(d.body for d in [*first, *second]) == [b"a", b"b"]
        assert counter.calls["ChangeMessageVisibilityBatch"] == 0  # the second was not released
        assert counter.calls["ReceiveMessage"] <= 1  # at most a new poll of the first's queue
        await broker.ack([*first, *second])


async def test_held_messages_nobody_takes_are_released(sqs_settings) -> None:
    settings = sqs_settings.model_copy(update={"visibility_timeout": 120})
    async with SqsBroker(settings) as mine, SqsBroker(settings) as other:
        await mine.publish([Message("a", b"a"), Message("b", b"b")])
        counter = CallCounter()
        counter.attach(mine.client.raw)
        first = await mine.receive(["a", "b"], max_messages=1, wait_seconds=5)
        # Invisible for 120 s once received: only the release lets the other broker have it.
        rest = await receive_until(other, ["a", "b"], 1, timeout=60)
        assert sorted(d.body for d in [*first, *rest]) == [b"a", b"b"]
        assert counter.calls["ChangeMessageVisibilityBatch"] == 1
        await mine.ack(first)
        await other.ack(rest)


async def test_small_receives_share_one_call_while_the_intake_is_high(
    sqs_settings, monkeypatch
) -> None:
    monkeypatch.setattr(broker_module, "HOLD_SECONDS", 60.0)  # no clock in this test
    settings = sqs_settings.model_copy(update={"visibility_timeout": 600})
    async with SqsBroker(settings) as broker:
        await broker.publish([Message("q", b"%d" % i) for i in range(20)])
        got = await receive_until(broker, ["q"], 10)  # ten taken in the last hold period
        counter = CallCounter()
        counter.attach(broker.client.raw)
        for _ in range(10):  # a worker whose slots free up one at a time
            got += await broker.receive(["q"], max_messages=1, wait_seconds=5)
        assert sorted(int(d.body) for d in got) == list(range(20))
        assert counter.calls == {"ReceiveMessage": 1}  # asked for ten, held nine
        await broker.ack(got)


async def test_interrupt_returns_a_waiting_receive_and_keeps_its_poll(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=30) as broker:
        await broker.publish([Message("q", b"warm")])
        await broker.ack(await broker.receive(["q"], max_messages=1, wait_seconds=5))
        counter = CallCounter()
        counter.attach(broker.client.raw)
        waiting = asyncio.create_task(broker.receive(["q"], max_messages=1, wait_seconds=20))
        await eventually(lambda: counter.calls["ReceiveMessage"] == 1)
        broker.interrupt()
        assert await asyncio.wait_for(waiting, 5) == []
        await broker.publish([Message("q", b"after")])
        got = await broker.receive(["q"], max_messages=1, wait_seconds=20)
        assert [d.body for d in got] == [b"after"]
        assert counter.calls["ReceiveMessage"] == 1  # the interrupted long poll brought it
        await broker.ack(got)


async def test_acks_of_separate_calls_share_a_delete_batch(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=30) as broker:
        await broker.publish([Message("acks", b"%d" % i) for i in range(13)])
        got = await receive_until(broker, ["acks"], 13)
        url = await broker.client.queue_url("acks")
        counter = CallCounter()
        counter.attach(broker.client.raw)
        for delivery in got[:10]:
            await broker.ack([delivery])
        await eventually(lambda: counter.calls["DeleteMessageBatch"] == 1)  # ten: sent at once
        await broker.ack(got[10:])  # three wait for company, at most ACK_LINGER; close sends
    assert counter.calls == {"DeleteMessageBatch": 2}
    async with SqsBroker(sqs_settings) as again:
        assert await queue_counts(again.client.raw, url) == (0, 0)  # all 13 deleted


async def test_extend_calls_sqs_only_when_the_visibility_runs_low(sqs_settings) -> None:
    settings = sqs_settings.model_copy(update={"visibility_timeout": 60})
    async with SqsBroker(settings) as broker:
        await broker.publish([Message("long", b"x")])
        got = await receive_until(broker, ["long"], 1)
        counter = CallCounter()
        counter.attach(broker.client.raw)
        await broker.extend(got, 60)  # just received: invisible for about 60 s more
        assert counter.calls == {}
        await broker.extend(got, 600)  # more than it has
        assert counter.calls == {"ChangeMessageVisibilityBatch": 1}
        await broker.extend(got, 600)  # just extended
        assert counter.calls == {"ChangeMessageVisibilityBatch": 1}
        await broker.ack(got)


async def test_close_interrupts_a_twenty_second_long_poll(sqs_settings) -> None:
    broker = SqsBroker(sqs_settings, lease_seconds=1)
    await broker.start()
    await broker.publish([Message("quiet", b"warm")])
    await broker.ack(await broker.receive(["quiet"], max_messages=1, wait_seconds=5))
    waiting = asyncio.create_task(broker.receive(["quiet"], max_messages=1, wait_seconds=60))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await broker.close()
    assert await asyncio.wait_for(waiting, 5) == []
    assert time.monotonic() - started < 2
    await broker.close()  # idempotent
    with pytest.raises(BrokerUnavailableError):
        await broker.publish([Message("quiet", b"x")])


async def test_unreachable_endpoint_is_retryable() -> None:
    settings = SqsBrokerSettings(
        endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1", max_attempts=1
    )
    async with SqsBroker(settings, lease_seconds=1) as broker:
        with pytest.raises(BrokerUnavailableError) as caught:
            await broker.publish([Message("q", b"x")])
        assert caught.value.__cause__ is not None
        with pytest.raises(BrokerUnavailableError):
            await broker.receive(["q"], max_messages=1, wait_seconds=1)


async def test_no_region_is_a_configuration_error(monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    broker = SqsBroker(SqsBrokerSettings(), lease_seconds=1)
    with pytest.raises(ConfigurationError, match="POLYQUEUE_SQS_REGION"):
        await broker.start()


async def test_stale_receipts_are_ignored_by_extend_and_nack(sqs_settings) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=1) as broker:
        await broker.publish([Message("stale", b"x")])
        first = await broker.receive(["stale"], max_messages=1, wait_seconds=5)
        again: list = []
        deadline = time.monotonic() + 10
        while not again and time.monotonic() < deadline:
            again = await broker.receive(["stale"], max_messages=1, wait_seconds=1)
        assert again
        await broker.extend(first, 5)
        await broker.nack(first, 0)
        await broker.ack(again)
        await broker.ack(first)
