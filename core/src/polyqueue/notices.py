"""Notices: the broker message body that says "job N is ready", and its strict decoder."""

from __future__ import annotations

import json

from polyqueue.broker import Message

__all__ = [
    "MAX_JOB_ID",
    "MAX_NOTICE_BYTES",
    "InvalidNoticeError",
    "decode_notice",
    "encode_notice",
    "notice_message",
]

MAX_JOB_ID = 2**63 - 1
"""The largest job id: `jobs.id` is a PostgreSQL bigint."""
MAX_NOTICE_BYTES = 65_536
"""Longer bodies are not notices, and are refused before parsing (a notice is ~20 bytes)."""


class InvalidNoticeError(ValueError):
    """A broker message that is not a Polyqueue notice."""


def encode_notice(job_id: int) -> bytes:
    """The body of a notice for `job_id`."""
    return b'{"job_id":%d}' % job_id


def notice_message(job_id: int, queue: str, priority: int = 0) -> Message:
    """A broker message announcing `job_id` on `queue`."""
    return Message(queue=queue, body=encode_notice(job_id), priority=priority)


def decode_notice(body: bytes) -> int:
    """The job id in a notice body; `InvalidNoticeError` saying why for anything else.

    Never raises anything else, whatever the bytes (not UTF-8, nested too deep, huge): a
    worker drops what is not a notice and goes on.
    """
    if len(body) > MAX_NOTICE_BYTES:
        raise InvalidNoticeError(f"{len(body)} bytes, too long for a notice: {body[:80]!r}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidNoticeError(f"not JSON: {body[:80]!r}") from exc
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if type(job_id) is not int or not 0 < job_id <= MAX_JOB_ID:
        raise InvalidNoticeError(f"no job_id from 1 to 2**63-1 in {body[:80]!r}")
    return job_id
