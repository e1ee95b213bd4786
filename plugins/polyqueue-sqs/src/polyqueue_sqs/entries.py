"""Pure helpers: SQS queue names, batches of ten, send entries, received bodies, whole-second
timeouts."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from polyqueue.exceptions import BrokerError, UnsupportedCapabilityError
from polyqueue.notices import InvalidNoticeError, decode_notice

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from polyqueue.broker import Message
    from polyqueue_sqs.settings import SqsBrokerSettings

__all__ = [
    "BATCH",
    "MAX_DELAY_SECONDS",
    "MAX_VISIBILITY_SECONDS",
    "batches",
    "long_poll_seconds",
    "received_body",
    "send_entry",
    "sqs_queue_name",
    "whole_seconds",
]

BROKER = "sqs"
BATCH = 10
"""SQS's most entries per SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch
and messages per ReceiveMessage."""
MAX_DELAY_SECONDS = 900
"""SQS's longest `DelaySeconds` (15 minutes)."""
MAX_VISIBILITY_SECONDS = 43_200
"""SQS's longest visibility timeout (12 hours)."""
POLL_SLACK = 0.1
"""A wait this close to a whole second rounds up to it: `wait_seconds=1.0` long-polls 1 s."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
T = TypeVar("T")


def sqs_queue_name(settings: SqsBrokerSettings, queue: str) -> str:
    """The SQS queue name of Polyqueue queue `queue`; `BrokerError` if SQS would refuse it."""
    name = settings.queue_prefix + queue
    suffix = ".fifo" if settings.fifo else ""
    if not _NAME.match(name) or len(name + suffix) > 80:  # noqa: PLR2004  (SQS's limit)
        raise BrokerError(
            f"queue {queue!r} gives SQS queue name {name + suffix!r}: SQS allows letters,"
            " digits, - and _, at most 80 characters (with POLYQUEUE_SQS_QUEUE_PREFIX)",
            broker=BROKER,
        )
    return name + suffix


def batches(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def whole_seconds(seconds: float, ceiling: int) -> int:
    """`seconds` rounded up to a whole number (SQS takes no fractions), within 0..ceiling."""
    return min(max(math.ceil(seconds), 0), ceiling)


def long_poll_seconds(remaining: float, cap: int) -> int:
    """`WaitTimeSeconds` for a receive with `remaining` seconds left: never past its deadline."""
    return min(cap, max(int(remaining + POLL_SLACK), 0))


def send_entry(index: int, message: Message, settings: SqsBrokerSettings) -> dict[str, Any]:
    """One SendMessageBatch entry for `message`."""
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": _text(message.body)}
    if settings.fifo:
        if message.delay > 0:
            raise UnsupportedCapabilityError("FIFO queues have no per-message delay", broker=BROKER)
        entry["MessageGroupId"] = _group_id(message, settings)
        # Unique per send: a notice republished within SQS's 5-minute deduplication window
        # (the republisher, a worker giving a job back) must not be dropped as a duplicate.
        entry["MessageDeduplicationId"] = uuid.uuid4().hex
    elif message.delay > 0:
        if message.delay > MAX_DELAY_SECONDS:
            raise UnsupportedCapabilityError(
                f"SQS delays at most {MAX_DELAY_SECONDS}s, asked {message.delay}s", broker=BROKER
            )
        entry["DelaySeconds"] = whole_seconds(message.delay, MAX_DELAY_SECONDS)
    return entry


def received_body(message: Mapping[str, Any]) -> bytes:
    """The body of a received SQS message as bytes, whatever the message holds.

    Bodies are text. Text that UTF-8 cannot encode (a lone surrogate, which SQS refuses but a
    look-alike endpoint may keep) keeps its code points (`surrogatepass`), and a body that is
    missing or not text reads as `b""`. Either way the core gets bytes that are no notice, logs
    the message and drops (deletes) it: one such message never fails a receive, nor the
    messages received with it.
    """
    body = message.get("Body")
    if not isinstance(body, str):
        return b""
    return body.encode("utf-8", "surrogatepass")


def _group_id(message: Message, settings: SqsBrokerSettings) -> str:
    if settings.fifo_group == "queue":
        return message.queue
    try:
        return f"job-{decode_notice(message.body)}"
    except InvalidNoticeError:  # not a notice (tests, foreign producers): one group per body
        return "body-" + hashlib.sha256(message.body).hexdigest()[:32]


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BrokerError("SQS message bodies must be UTF-8 text", broker=BROKER) from exc
