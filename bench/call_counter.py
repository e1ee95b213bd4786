"""`CallCounter`: counts the SQS API calls of a broker, by operation.

It hooks botocore's `before-call` event on the `sqs` broker's one client, so every call the
broker makes is counted once, retries included as botocore sees them (one per API call).
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["CallCounter"]


class CallCounter:
    """Counts SQS API calls of a broker's client via botocore's `before-call` event."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def attach(self, broker: Any) -> None:
        """Count the calls of `broker` (a started `polyqueue_sqs.SqsBroker`)."""
        broker.client.raw.meta.events.register("before-call.sqs", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())
