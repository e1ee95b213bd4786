"""`NoticePublisher`: notices of committed jobs always follow, whatever the broker raises."""

from __future__ import annotations

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
