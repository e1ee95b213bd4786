"""The SQS broker runs the broker contract suite unchanged, against moto over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqs_support import send_raw, sqs_text

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract
from polyqueue_sqs import SqsBroker, SqsBrokerSettings

LEASE = 1.0


class TestSqsBroker(BrokerContract):
    @pytest.fixture(params=["standard", "fifo"])
    async def broker(
        self, request: pytest.FixtureRequest, sqs_settings: SqsBrokerSettings
    ) -> AsyncIterator[SqsBroker]:
        settings = sqs_settings.model_copy(update={"fifo": request.param == "fifo"})
        async with SqsBroker(settings, lease_seconds=LEASE) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """A raw SendMessage, as a foreign producer's, of `body` as text SQS accepts."""
        assert isinstance(broker, SqsBroker)
        client = broker.client
        group = uuid.uuid4().hex if broker.settings.fifo else None
        await send_raw(client.raw, await client.queue_url(queue), sqs_text(body), group=group)
