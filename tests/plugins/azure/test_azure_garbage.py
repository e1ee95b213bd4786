"""Garbage from other AMQP producers: never raising out of the broker, never ending a worker.

Application properties that are not UTF-8 (keys and values), odd property types, non-data
bodies, bodies that are not notices: delivered or dead-lettered, and settled every way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from azure_fake import FakeNamespace
from azure_support import running_worker
from pydantic import BaseModel

from conftest import FAKE_CONNECTION_STRING
from polyqueue import JobStatus
from polyqueue.broker import Delivery
from polyqueue.notices import notice_message
from polyqueue.testing.contract import GARBAGE
from polyqueue.testing.helpers import eventually
from polyqueue_azure import AzureBroker, AzureBrokerSettings
from polyqueue_azure.ops import NOT_A_NOTICE, QUEUE_PROPERTY

QUEUE = "work"
QUEUE_BYTES = {QUEUE_PROPERTY.encode(): QUEUE.encode()}  # as the SDK receives it off the wire
ODD_PROPERTIES = [
    {**QUEUE_BYTES, b"\xff\xfe": b"v"},
    {**QUEUE_BYTES, b"k": b"\x00\xff"},
    {QUEUE_PROPERTY.encode(): b"\xff\xfe"},
    {QUEUE_PROPERTY: 5, "none": None, "float": 1.5},
    {QUEUE_PROPERTY: QUEUE, b"\xff": b"\xff"},
]


def settings(**overrides: object) -> AzureBrokerSettings:
    return AzureBrokerSettings(connection_string=FAKE_CONNECTION_STRING, **overrides)


@pytest.fixture
async def broker(namespace: FakeNamespace) -> AsyncIterator[AzureBroker]:
    async with AzureBroker(settings(), lease_seconds=1.0, seam=namespace) as broker:
        yield broker


async def receive_all(broker: AzureBroker, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    for _ in range(20):
        got += await broker.receive([QUEUE], max_messages=count - len(got), wait_seconds=0.5)
        if len(got) >= count:
            break
    return got


@pytest.mark.parametrize("properties", ODD_PROPERTIES)
async def test_odd_application_properties_settle_every_way(
    broker: AzureBroker,
    namespace: FakeNamespace,
    properties: dict[object, object],
) -> None:
    namespace.inject(QUEUE, b"\x00\xffnot a notice", properties=properties)
    await broker.publish([notice_message(1, QUEUE)])
    got = await receive_all(broker, 2)
    assert sorted(d.body for d in got) == [b"\x00\xffnot a notice", b'{"job_id":1}']
    await broker.extend(got, 1.0)
    await broker.nack(got, delay=0.05)  # copies: properties the SDK cannot send are left off
    again = await receive_all(broker, 2)
    assert sorted(d.body for d in again) == sorted(d.body for d in got)
    for delivery in again:  # the copies are still Polyqueue messages of their queue
        assert delivery.handle.received.message.application_properties[QUEUE_PROPERTY] == QUEUE
    await broker.nack(again)
    await broker.ack(await receive_all(broker, 2))
    assert namespace.messages(QUEUE) == []
    assert not namespace.dead_letters[QUEUE]


@pytest.mark.parametrize(
    "amqp_body",
    [{"value_body": {"job_id": 1}}, {"value_body": None}, {"sequence_body": [[1, 2]]}],
    ids=["value", "null value", "sequence"],
)
@pytest.mark.parametrize("dead_letter_foreign", [True, False])
async def test_non_data_bodies_are_dead_lettered_or_handed_over_empty(
    namespace: FakeNamespace, amqp_body: dict[str, object], dead_letter_foreign: bool
) -> None:
    config = settings(dead_letter_foreign=dead_letter_foreign)
    async with AzureBroker(config, lease_seconds=1.0, seam=namespace) as broker:
        namespace.inject(QUEUE, properties=QUEUE_BYTES, amqp_body=amqp_body)
        await broker.publish([notice_message(1, QUEUE)])
        got = await receive_all(broker, 1 if dead_letter_foreign else 2)
        await broker.extend(got, 1.0)
        await broker.nack(got, delay=0.05)
        again = await receive_all(broker, len(got))
        await broker.ack(again)
    bodies = sorted(d.body for d in again)
    if dead_letter_foreign:
        assert bodies == [b'{"job_id":1}']
        [dead] = namespace.dead_letters[QUEUE]
        assert dead.reason == NOT_A_NOTICE
    else:
        assert bodies == [b"", b'{"job_id":1}']  # the core drops the empty body
    assert namespace.messages(QUEUE) == []


class Item(BaseModel):
    n: int


async def test_a_worker_goes_past_garbage_of_every_kind(
    make_app, azure_env: FakeNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = make_app(queue_backend="azure", republish_after=1.0, maintenance_interval=0.2)
    runs: Counter[int] = Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1

    async with app:
        queue = app.settings.default_queue
        raw = {QUEUE_PROPERTY.encode(): queue.encode()}
        for body in GARBAGE:
            azure_env.inject(queue, body, properties={**raw, b"\xff": b"\xfe"})
        azure_env.inject(queue, b'{"job_id": 1}')  # no queue property: foreign
        azure_env.inject(queue, properties=raw, amqp_body={"value_body": "x"})
        async with running_worker(app, concurrency=2):
            job_id = await app.enqueue("count", Item(n=1))
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
            await eventually(lambda: azure_env.messages(queue) == [], timeout=30)
    assert runs == Counter({1: 1})
    assert len(azure_env.dead_letters[queue]) == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("not a notice" in message for message in warned) >= len(GARBAGE)
