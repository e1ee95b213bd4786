"""`interrupt()`: waiting receives return `[]` at once; what their calls bring is not lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from azure_fake import FakeNamespace

from conftest import FAKE_CONNECTION_STRING
from polyqueue.broker import Delivery
from polyqueue.notices import notice_message
from polyqueue_azure import AzureBroker, AzureBrokerSettings

QUEUE = "work"
PATIENCE = 15.0


@pytest.fixture
async def broker(namespace: FakeNamespace) -> AsyncIterator[AzureBroker]:
    settings = AzureBrokerSettings(connection_string=FAKE_CONNECTION_STRING, max_wait_time=5.0)
    async with AzureBroker(settings, lease_seconds=1.0, seam=namespace) as broker:
        yield broker


async def interrupted_receive(broker: AzureBroker, namespace: FakeNamespace) -> None:
    """A receive waiting on an empty queue, interrupted: it returns [], its call goes on."""
    waiting = asyncio.create_task(broker.receive([QUEUE], max_messages=10, wait_seconds=60))
    deadline = time.monotonic() + PATIENCE
    while namespace.calls["receive"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # until its call is made; no assertion rests on the pace
    broker.interrupt()
    assert await asyncio.wait_for(waiting, PATIENCE) == []


async def test_the_next_receive_takes_what_the_interrupted_call_brings(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    await interrupted_receive(broker, namespace)
    await broker.publish([notice_message(n, QUEUE) for n in (1, 2, 3)])
    first = await broker.receive([QUEUE], max_messages=1, wait_seconds=PATIENCE)
    rest = await broker.receive([QUEUE], max_messages=10, wait_seconds=PATIENCE)
    assert sorted(d.body for d in [*first, *rest]) == [b'{"job_id":%d}' % n for n in (1, 2, 3)]
    assert len(first) == 1
    assert namespace.calls["receive"] == 1  # the interrupted call brought all three
    await broker.ack([*first, *rest])
    assert namespace.messages(QUEUE) == []


async def test_held_messages_whose_lock_ran_out_come_back_from_service_bus(
    broker: AzureBroker, namespace: FakeNamespace
) -> None:
    await interrupted_receive(broker, namespace)
    await broker.publish([notice_message(n, QUEUE) for n in (1, 2, 3)])
    (first,) = await broker.receive([QUEUE], max_messages=1, wait_seconds=PATIENCE)
    locked_until = first.handle.locked_until
    assert locked_until is not None
    while dt.datetime.now(dt.UTC) <= locked_until:  # until the held ones' locks ran out too
        await asyncio.sleep(0.05)
    rest: list[Delivery] = []
    deadline = time.monotonic() + PATIENCE
    while len(rest) < 3 and time.monotonic() < deadline:
        rest += await broker.receive([QUEUE], max_messages=10, wait_seconds=1)
    assert sorted(d.body for d in rest) == [b'{"job_id":%d}' % n for n in (1, 2, 3)]
    await broker.ack([first, *rest])  # `first`'s lock is gone: skipped
    assert namespace.messages(QUEUE) == []  # every other ack held a live lock


async def test_close_ends_a_parked_call(broker: AzureBroker, namespace: FakeNamespace) -> None:
    await interrupted_receive(broker, namespace)
    await broker.close()
    assert not broker._receiving
