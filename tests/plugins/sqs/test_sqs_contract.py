"""The SQS broker runs the broker contract suite unchanged, against moto over real HTTP.

The server-restart cases take moto down with a `FaultProxy` in `drop` mode between broker and
the session's server: SQS keeps its messages through an outage, and so does the proxied moto
(`durable`), while a moto process killed and started again would come back empty, after
seconds of start-up.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from sqs_support import send_raw, sqs_text

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract, ServerRestartContract
from polyqueue.testing.proxy import FaultProxy
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


@pytest.mark.slow
class TestSqsBrokerServerRestart(ServerRestartContract):
    durable = True

    @pytest.fixture(params=["standard", "fifo"])
    async def broker(
        self, request: pytest.FixtureRequest, sqs_settings: SqsBrokerSettings
    ) -> AsyncIterator[SqsBroker]:
        endpoint = urlsplit(sqs_settings.endpoint_url)
        async with FaultProxy(endpoint.port or 80) as self.proxy:
            proxied = endpoint._replace(netloc=f"127.0.0.1:{self.proxy.port}").geturl()
            settings = sqs_settings.model_copy(
                update={"fifo": request.param == "fifo", "endpoint_url": proxied}
            )
            async with SqsBroker(settings, lease_seconds=LEASE) as broker:
                yield broker

    @contextlib.asynccontextmanager
    async def restart_server(self, broker: Broker) -> AsyncIterator[None]:  # noqa: ARG002
        self.proxy.set_mode("drop")
        try:
            yield
        finally:
            self.proxy.set_mode("pass")
