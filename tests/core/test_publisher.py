"""`NoticePublisher`: notices of committed jobs always follow, whatever the broker raises."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from polyqueue import BrokerUnavailableError, Message
from polyqueue.brokers.in_process import InProcessBroker
from polyqueue.publisher import NoticePublisher
from polyqueue.testing.contract import receive_until
from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from collections.abc import Sequence


class FlakyBroker(InProcessBroker):
    """Fails its first publishes: unavailable once, then with a bug of its own."""

    def __init__(self) -> None:
        super().__init__(lease_seconds=5)
        self.failures = [BrokerUnavailableError("down", broker="flaky"), RuntimeError("a bug")]

    async def publish(self, messages: Sequence[Message]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await super().publish(messages)


async def test_notices_survive_unavailable_and_buggy_publishes(caplog) -> None:
    async with FlakyBroker() as broker:
        publisher = NoticePublisher(broker)
        await publisher.publish([Message("q", b"one")])  # never raises
        await publisher.publish([Message("q", b"two")])
        await eventually(lambda: publisher.pending == 0, timeout=30)
        deliveries = await receive_until(broker, ["q"], 2)
        assert sorted(d.body for d in deliveries) == [b"one", b"two"]
        await publisher.close()
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


class GatedBroker(InProcessBroker):
    """Holds every publish until the gate opens; records the size of each call."""

    def __init__(self) -> None:
        super().__init__(lease_seconds=5)
        self.gate = asyncio.Event()
        self.calls: list[int] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.calls.append(len(messages))
        await self.gate.wait()
        await super().publish(messages)


async def test_hand_off_does_not_wait_for_the_broker_and_close_sends_everything() -> None:
    async with GatedBroker() as broker:
        publisher = NoticePublisher(broker)
        publisher.hand_off([Message("q", b"1")])  # returns at once: the broker is gated
        await eventually(lambda: broker.calls == [1])
        for body in (b"2", b"3", b"4"):
            publisher.hand_off([Message("q", body)])
        assert publisher.pending == 4
        closing = asyncio.create_task(publisher.close())
        await asyncio.sleep(0)
        assert not closing.done()  # close waits for what was handed off
        broker.gate.set()
        await closing
        assert broker.calls == [1, 3]  # what piled up behind the first went out as one call
        assert publisher.pending == 0
        deliveries = await receive_until(broker, ["q"], 4)
        assert sorted(d.body for d in deliveries) == [b"1", b"2", b"3", b"4"]


async def test_a_handed_off_notice_survives_an_unavailable_broker() -> None:
    async with FlakyBroker() as broker:
        publisher = NoticePublisher(broker)
        publisher.hand_off([Message("q", b"one")])
        await eventually(lambda: publisher.pending == 0, timeout=30)
        (delivery,) = await receive_until(broker, ["q"], 1)
        assert delivery.body == b"one"
        await publisher.close()
