"""`AzureBroker` against the fake namespace: batches, sessions, settling, locks, errors."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
)
from azure_fake import FakeNamespace

from conftest import FAKE_CONNECTION_STRING
from polyqueue.broker import Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError, ConfigurationError
from polyqueue.notices import notice_message
from polyqueue.plugins import broker_classes, create_plugin_manager
from polyqueue.testing.helpers import eventually
from polyqueue_azure import AzureBroker, AzureBrokerSettings
from polyqueue_azure.ops import NOT_A_NOTICE
from polyqueue_azure.settings import load_azure_settings

QUEUE = "jobs"


def settings(**overrides: object) -> AzureBrokerSettings:
    return AzureBrokerSettings(
        connection_string=FAKE_CONNECTION_STRING, retry_backoff=0.01, **overrides
    )


@pytest.fixture
async def broker(namespace: FakeNamespace) -> AsyncIterator[AzureBroker]:
    async with AzureBroker(settings(), lease_seconds=1.0, seam=namespace) as broker:
        yield broker


async def receive(broker: AzureBroker, count: int = 1, queue: str = QUEUE) -> list:
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got += await broker.receive([queue], max_messages=count - len(got), wait_seconds=0.5)
    return got


# -- packaging and settings --------------------------------------------------------------------


def test_hooks_import_no_sdk() -> None:
    code = (
        "import sys, polyqueue_azure.hooks;"
        "print([m for m in sys.modules if m == 'azure' or m.startswith('azure.')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_as_azure_through_the_entry_point() -> None:
    assert broker_classes(create_plugin_manager())["azure"] is AzureBroker


def test_an_endpoint_is_required_and_the_error_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POLYQUEUE_AZURE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("POLYQUEUE_AZURE_FULLY_QUALIFIED_NAMESPACE", raising=False)
    with pytest.raises(ConfigurationError) as error:
        load_azure_settings()
    assert "POLYQUEUE_AZURE_CONNECTION_STRING" in str(error.value)
    assert "POLYQUEUE_AZURE_FULLY_QUALIFIED_NAMESPACE" in str(error.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLYQUEUE_AZURE_CONNECTION_STRING", "SharedAccessKey=nope"),
        ("POLYQUEUE_AZURE_PREFETCH_COUNT", "-1"),
        ("POLYQUEUE_AZURE_MAX_WAIT_TIME", "0"),
        ("POLYQUEUE_AZURE_QUEUE_PREFIX", "bad prefix"),
    ],
)
def test_bad_settings_name_their_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYQUEUE_AZURE_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_azure_settings()


@pytest.mark.parametrize("queue", ["jobs", "images.resize", "a/b", "x" * 256])
async def test_queue_names_service_bus_takes_are_prepared(queue: str) -> None:
    await AzureBroker(settings(queue_prefix="app-")).prepare_queue(queue)


@pytest.mark.parametrize("queue", ["semi;colon", "ends-with-dash-", "spaced name", "x" * 257])
async def test_queue_names_service_bus_refuses_are_refused_before_any_insert(queue: str) -> None:
    with pytest.raises(BrokerError, match=r"Service Bus queue name .*QUEUE_PREFIX"):
        await AzureBroker(settings(queue_prefix="app-")).prepare_queue(queue)


def test_the_connection_string_stays_secret() -> None:
    assert "SharedAccessKey=s" not in repr(settings())


def test_capabilities_follow_the_settings() -> None:
    broker = AzureBroker(settings(receive_batch=32))
    assert broker.capabilities.max_batch == 32
    assert not broker.capabilities.priority
    assert AzureBroker.capabilities.max_batch == 100  # the class default is untouched


# -- publishing --------------------------------------------------------------------------------


async def test_publish_splits_batches_by_size(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    namespace.max_batch_bytes = 1024
    await broker.publish([notice_message(n, QUEUE) for n in range(1, 61)])
    assert len(namespace.batches_sent) > 1
    assert sum(namespace.batches_sent) == 60
    assert [s.body for s in namespace.messages(QUEUE)][:2] == [b'{"job_id":1}', b'{"job_id":2}']


async def test_a_message_larger_than_a_batch_is_refused(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    namespace.max_batch_bytes = 200
    with pytest.raises(BrokerError, match="too large"):
        await broker.publish([Message(QUEUE, b"x" * 500)])


async def test_queue_prefix_names_the_service_bus_queue(namespace: FakeNamespace) -> None:
    async with AzureBroker(settings(queue_prefix="app1-"), seam=namespace) as broker:
        await broker.publish([notice_message(1, QUEUE)])
        assert len(namespace.messages("app1-" + QUEUE)) == 1
        [delivery] = await receive(broker)
        assert delivery.queue == QUEUE


async def test_publish_delay_becomes_a_scheduled_enqueue_time(broker: AzureBroker) -> None:
    await broker.publish([Message(QUEUE, b'{"job_id":1}', delay=1.0)])
    started = time.monotonic()
    [delivery] = await receive(broker)
    assert time.monotonic() - started >= 0.9
    await broker.ack([delivery])


# -- receiving ---------------------------------------------------------------------------------


async def test_deliveries_carry_real_sdk_messages_and_lock_tokens(broker: AzureBroker) -> None:
    await broker.publish([notice_message(7, QUEUE)])
    [delivery] = await receive(broker)
    message = delivery.handle.received.message
    assert isinstance(message, ServiceBusReceivedMessage)
    assert message.lock_token is not None
    assert message.locked_until_utc is not None
    assert message.delivery_count == 0
    assert delivery.body == b'{"job_id":7}'
    await broker.ack([delivery])


async def test_foreign_messages_are_dead_lettered_with_a_reason(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    batch = await namespace.create_batch(QUEUE)
    batch.add_message(ServiceBusMessage(b'{"job_id": 3}'))  # no polyqueue_queue property
    await namespace.send_batch(QUEUE, batch)
    await broker.publish([notice_message(4, QUEUE)])
    [delivery] = await receive(broker)
    assert delivery.body == b'{"job_id":4}'
    [dead] = namespace.dead_letters[QUEUE]
    assert dead.reason == NOT_A_NOTICE
    assert "polyqueue_queue" in dead.description


async def test_garbage_from_a_polyqueue_broker_reaches_the_core(broker: AzureBroker) -> None:
    await broker.publish([Message(QUEUE, b"not json")])  # the core decodes, logs and acks it
    [delivery] = await receive(broker)
    assert delivery.body == b"not json"


async def test_session_queues_get_a_session_per_job_and_one_session_per_receive(
    namespace: FakeNamespace,
) -> None:
    config = settings(session_queues=f"{QUEUE}, other", session_partitions=2)
    async with AzureBroker(config, seam=namespace) as broker:
        await broker.publish([notice_message(n, QUEUE) for n in range(1, 7)])
        assert {s.session_id for s in namespace.messages(QUEUE)} == {"0", "1"}
        assert len(namespace.batches_sent) == 2  # sessions never share a batch
        first = await broker.receive([QUEUE], max_messages=10, wait_seconds=1)
        assert len({d.handle.received.message.session_id for d in first}) == 1
        second = await broker.receive([QUEUE], max_messages=10, wait_seconds=1)
        assert len(first) + len(second) == 6
        await broker.ack([*first, *second])


async def test_receive_visits_every_queue(broker: AzureBroker) -> None:
    await broker.publish([notice_message(1, "a"), notice_message(2, "b")])
    got = []
    for _ in range(4):
        received = await broker.receive(["a", "b"], max_messages=5, wait_seconds=0.5)
        await broker.ack(received)
        got += received
    assert sorted(d.queue for d in got) == ["a", "b"]


# -- settling and locks ------------------------------------------------------------------------


async def test_nack_without_delay_abandons(broker: AzureBroker, namespace: FakeNamespace) -> None:
    await broker.publish([notice_message(1, QUEUE)])
    await broker.nack(await receive(broker))
    [again] = await receive(broker)
    assert namespace.calls["abandon"] == 1
    assert again.handle.received.message.delivery_count == 1
    await broker.ack([again])


async def test_nack_with_delay_schedules_a_copy_then_completes(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    await broker.publish([notice_message(1, QUEUE)])
    await broker.nack(await receive(broker), delay=0.5)
    assert namespace.calls["schedule"] == 1
    assert namespace.calls["complete"] == 1
    [copy] = namespace.messages(QUEUE)
    assert copy.properties is not None
    assert copy.properties["polyqueue_queue"] == QUEUE  # still a Polyqueue message
    [again] = await receive(broker)
    assert again.body == b'{"job_id":1}'
    await broker.ack([again])


async def test_ack_after_the_lock_was_lost_does_not_fail(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    await broker.publish([notice_message(1, QUEUE)])
    deliveries = await receive(broker)
    namespace.expire_locks()
    await broker.ack(deliveries)
    await broker.nack(deliveries)
    await broker.nack(deliveries, delay=1)  # schedules a copy; completing the old one is moot
    assert len(namespace.messages(QUEUE)) == 2


async def test_extend_renews_until_the_asked_time(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    await broker.publish([notice_message(1, QUEUE)])
    deliveries = await receive(broker)
    await broker.extend(deliveries, 2.5)
    assert namespace.calls["renew"] == 1
    await eventually(lambda: namespace.calls["renew"] >= 3)
    assert await broker.receive([QUEUE], max_messages=1, wait_seconds=1.0) == []
    await broker.ack(deliveries)
    assert namespace.messages(QUEUE) == []


async def test_extend_on_a_lost_lock_warns_once_and_stops_renewing(
    broker: AzureBroker, namespace: FakeNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    await broker.publish([notice_message(1, QUEUE)])
    deliveries = await receive(broker)
    namespace.fail("renew", MessageLockLostError(message="lock lost"))
    await broker.extend(deliveries, 5)
    await broker.extend(deliveries, 5)
    assert namespace.calls["renew"] == 1
    assert sum("lock lost" in r.getMessage() for r in caplog.records) == 1


# -- transient errors --------------------------------------------------------------------------


async def test_transient_errors_are_retried_with_backoff(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    namespace.fail("send", ServiceBusConnectionError(message="link detached"))
    namespace.fail("receive", OperationTimeoutError(message="timeout"))
    namespace.fail("complete", ServiceBusServerBusyError(message="busy"))
    await broker.publish([notice_message(1, QUEUE)])
    deliveries = await receive(broker)
    await broker.ack(deliveries)
    assert namespace.calls["send"] == 2
    assert namespace.calls["receive"] >= 2
    assert namespace.calls["complete"] == 2
    assert namespace.messages(QUEUE) == []


async def test_persistent_errors_become_broker_unavailable(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    namespace.fail("send", *[ServiceBusConnectionError(message="down")] * 4)
    with pytest.raises(BrokerUnavailableError) as error:
        await broker.publish([notice_message(1, QUEUE)])
    assert isinstance(error.value.__cause__, ServiceBusConnectionError)
    assert error.value.broker == "azure"


async def test_a_closed_broker_refuses_work(namespace: FakeNamespace) -> None:
    broker = AzureBroker(settings(), seam=namespace)
    await broker.start()
    await broker.close()
    await broker.close()
    assert namespace.closed == 1
    with pytest.raises(BrokerUnavailableError):
        await broker.publish([notice_message(1, QUEUE)])
