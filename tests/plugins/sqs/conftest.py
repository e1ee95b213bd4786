"""SQS fixtures: one moto server per session over real HTTP, a fresh queue prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from sqs_support import DUMMY_AWS_ENV, TEST_SQS_ENDPOINT_ENV, MotoProcess

from polyqueue_sqs import SqsBrokerSettings


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """$POLYQUEUE_TEST_SQS_ENDPOINT_URL, else moto's threaded server on a free loopback port."""
    url = os.environ.get(TEST_SQS_ENDPOINT_ENV)
    if url:
        yield url
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region through the normal AWS chain; no profile, no metadata."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def sqs_prefix() -> str:
    """A queue prefix of this test's own (moto keeps queues for the whole session)."""
    return f"pqt-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def sqs_settings(sqs_endpoint: str, sqs_prefix: str) -> SqsBrokerSettings:
    """Broker settings on the session server under this test's prefix; queues created."""
    return SqsBrokerSettings(
        endpoint_url=sqs_endpoint, region="us-east-1", queue_prefix=sqs_prefix, create_queues=True
    )


@pytest.fixture
def sqs_env(sqs_endpoint: str, sqs_prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """POLYQUEUE_SQS_* for apps built in this test (`queue_backend="sqs"`)."""
    monkeypatch.setenv("POLYQUEUE_SQS_ENDPOINT_URL", sqs_endpoint)
    monkeypatch.setenv("POLYQUEUE_SQS_REGION", "us-east-1")
    monkeypatch.setenv("POLYQUEUE_SQS_QUEUE_PREFIX", sqs_prefix)
    monkeypatch.setenv("POLYQUEUE_SQS_CREATE_QUEUES", "true")
    return sqs_endpoint


@pytest.fixture
def moto_process() -> Iterator[MotoProcess]:
    """A moto server of this test's own (not started), to kill and restart at will."""
    server = MotoProcess()
    yield server
    server.kill()
