"""`KeySpace`: the names of every Redis key and channel the broker uses, under one prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KeySpace", "QueueKeys"]

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue; all start with `<prefix><queue>:`."""

    ready: str
    """zset: message ids available now, scored by -priority (ties: oldest id first)."""
    leased: str
    """zset: message ids owned by a receiver, scored by lease deadline (server ms)."""
    delayed: str
    """zset: message ids waiting out a delay, scored by due time (server ms)."""
    bodies: str
    """hash: message id -> body."""
    receipts: str
    """hash: message id -> receipt of its current delivery."""
    priorities: str
    """hash: message id -> priority (only non-zero ones)."""
    sequence: str
    """string: the last message id handed out."""
    doorbell: str
    """pub/sub channel: something became ready (or its due time changed)."""


_FIELDS = tuple(QueueKeys.__dataclass_fields__)


class KeySpace:
    """Maps queue names to keys under `prefix`; maps doorbell channels back to queues."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.doorbell_pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*:doorbell"
        self._cache: dict[str, QueueKeys] = {}

    def queue(self, name: str) -> QueueKeys:
        """The keys of queue `name`."""
        keys = self._cache.get(name)
        if keys is None:
            base = f"{self.prefix}{name}:"
            keys = QueueKeys(**{field: base + field for field in _FIELDS})
            self._cache[name] = keys
        return keys

    def queue_of_doorbell(self, channel: str) -> str | None:
        """The queue whose doorbell `channel` is, or None for a foreign channel."""
        suffix = ":doorbell"
        if channel.startswith(self.prefix) and channel.endswith(suffix):
            return channel[len(self.prefix) : -len(suffix)]
        return None
