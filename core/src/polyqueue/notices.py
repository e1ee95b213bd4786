"""Notices: the broker message body that says "job N is ready", and its strict decoder."""

from __future__ import annotations

import json

from polyqueue.broker import Message

__all__ = ["InvalidNoticeError", "decode_notice", "encode_notice", "notice_message"]


class InvalidNoticeError(ValueError):
    """A broker message that is not a Polyqueue notice."""


def encode_notice(job_id: int) -> bytes:
    """The body of a notice for `job_id`."""
    return b'{"job_id":%d}' % job_id


def notice_message(job_id: int, queue: str, priority: int = 0) -> Message:
    """A broker message announcing `job_id` on `queue`."""
    return Message(queue=queue, body=encode_notice(job_id), priority=priority)


def decode_notice(body: bytes) -> int:
    """The job id in a notice body; `InvalidNoticeError` saying why for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidNoticeError(f"not JSON: {body[:80]!r}") from exc
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if type(job_id) is not int or job_id <= 0:
        raise InvalidNoticeError(f"no positive integer job_id in {body[:80]!r}")
    return job_id
