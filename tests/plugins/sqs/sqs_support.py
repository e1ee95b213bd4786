"""Helpers for the SQS tests: moto servers (threaded, or a process to kill), call counts, raw
sends that bypass the broker."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import uuid
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


_NOT_IN_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters SQS refuses in a message body."""
MAX_BODY = 262_144
"""SQS's largest body before 2025, and that of SQS look-alikes (1 MiB now: a request that large
makes aiohttp warn, an error in these tests)."""


def sqs_text(body: bytes) -> str:
    """`body` as a body SQS accepts: invalid UTF-8 and refused characters become U+FFFD, an
    empty body one space (SQS needs at least one character), at most `MAX_BODY` characters."""
    text = _NOT_IN_SQS.sub("\ufffd", body.decode("utf-8", "replace"))
    return text[:MAX_BODY] or " "


async def send_raw(
    client: Any,
    url: str,
    body: str,
    *,
    group: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> None:
    """SendMessage straight to the queue at `url`, as a foreign producer would; `group` is the
    `MessageGroupId` of a FIFO queue (with a fresh deduplication id)."""
    entry: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
    if group is not None:
        entry |= {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}
    if attributes:
        entry["MessageAttributes"] = attributes
    await client.send_message(**entry)
