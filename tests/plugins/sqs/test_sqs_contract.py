"""The SQS broker runs the broker contract suite unchanged, against moto over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
