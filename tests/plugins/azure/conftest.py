"""Azure fixtures: a fake Service Bus namespace, and the environment that selects it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure_fake import FakeNamespace

from polyqueue_azure.seam import set_seam_factory

FAKE_CONNECTION_STRING = (
    "Endpoint=sb://fake.servicebus.local/;SharedAccessKeyName=k;SharedAccessKey=s"
)


@pytest.fixture
def namespace() -> FakeNamespace:
    """A fresh in-memory namespace; its locks last one second."""
    return FakeNamespace(lock_duration=1.0)


@pytest.fixture
def azure_env(namespace: FakeNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNamespace]:
    """Apps built now on `queue_backend="azure"` talk to `namespace` (the test seam)."""
    monkeypatch.setenv("POLYQUEUE_AZURE_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    monkeypatch.setenv("POLYQUEUE_AZURE_RETRY_BACKOFF", "0.01")
    previous = set_seam_factory(lambda _settings: namespace)
    yield namespace
    set_seam_factory(previous)
