"""Helpers for the SQS tests: moto servers (threaded, or a process to kill), call counts."""

from __future__ import annotations

import collections
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from polyqueue.testing.processes import free_port, wait_listening

TEST_SQS_ENDPOINT_ENV = "POLYQUEUE_TEST_SQS_ENDPOINT_URL"
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoProcess:
    """`python -m moto.server` in a process of its own: killing it drops every connection and
    all state, as an SQS outage does (a stopped ThreadedMotoServer keeps serving keep-alive
    connections from its handler threads, and keeps its state, which lives in this process)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start on `port` and wait until it accepts connections."""
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.process, self.port, name="moto.server", timeout=30)

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class CallCounter:
    """Counts SQS API calls of a client via botocore's `before-call` event."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.sqs", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


async def queue_counts(client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the SQS queue at `url` (exact on moto)."""
    reply = await client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = reply["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )
