"""The Amazon SQS broker for Polyqueue: `queue_backend = "sqs"`, settings `POLYQUEUE_SQS_*`."""

from __future__ import annotations

from polyqueue_sqs.broker import SqsBroker
from polyqueue_sqs.settings import SqsBrokerSettings

__all__ = ["SqsBroker", "SqsBrokerSettings"]
