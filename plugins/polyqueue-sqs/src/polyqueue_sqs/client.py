"""`SqsClient`: the only module that talks to SQS (one aiobotocore client, queue URL cache).

Imported by `SqsBroker.start()`, so that importing the plugin does not import the AWS SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from polyqueue.exceptions import BrokerError, BrokerUnavailableError, ConfigurationError
from polyqueue_sqs.entries import sqs_queue_name

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from polyqueue_sqs.settings import SqsBrokerSettings

__all__ = ["SqsClient"]

log = logging.getLogger(__name__)

BROKER = "sqs"
UNAVAILABLE = (BotoConnectionError, HTTPClientError, OSError, TimeoutError)
"""Errors meaning "cannot reach the endpoint"."""
RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestThrottled",
        "ThrottlingException",
        "Throttling",
        "KMS.ThrottlingException",
    }
)
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
STALE_RECEIPT_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
)
"""Per-entry failures of a delete or visibility change whose receipt is no longer current."""


class SqsClient:
    """One aiobotocore SQS client per broker, and the URLs of the queues it has resolved."""

    def __init__(self, settings: SqsBrokerSettings, visibility_timeout: int) -> None:
        self._settings = settings
        self._visibility = visibility_timeout
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._urls: dict[str, str] = {}
        self._resolving = asyncio.Lock()

    @property
    def raw(self) -> Any:
        """The aiobotocore client (tests count its calls with `meta.events`)."""
        return self._require()

    async def open(self) -> None:
        """Create the client; `ConfigurationError` naming the variable for a missing region."""
        settings = self._settings
        config = AioConfig(
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.wait_time_seconds + 10,  # above the longest long poll
            max_pool_connections=settings.max_pool_connections,
        )
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "sqs",
                    region_name=settings.region,
                    endpoint_url=settings.endpoint_url,
                    config=config,
                )
            )
        except NoRegionError as exc:
            await stack.aclose()
            raise ConfigurationError(
                "no AWS region: set POLYQUEUE_SQS_REGION (or AWS_REGION)"
            ) from exc
        self._stack = stack

    async def close(self) -> None:
        """Close the client and its connections. Idempotent."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(BotoCoreError, OSError):
                await stack.aclose()

    def _require(self) -> Any:
        if self._client is None:
            raise BrokerUnavailableError("the sqs broker is closed", broker=BROKER)
        return self._client

    # -- queues -------------------------------------------------------------------------------

    async def queue_url(self, queue: str) -> str:
        """The URL of Polyqueue queue `queue`, resolved once (created if allowed)."""
        url = self._urls.get(queue)
        if url is not None:
            return url
        async with self._resolving:
            if queue not in self._urls:
                self._urls[queue] = await self._resolve(sqs_queue_name(self._settings, queue))
        return self._urls[queue]

    async def _resolve(self, name: str) -> str:
        """`CreateQueue` when allowed (it returns the URL of an existing queue with the same
        attributes: one call either way), else, or if it is refused, `GetQueueUrl`."""
        client = self._require()
        refused: BrokerError | None = None
        if self._settings.create_queues:
            try:
                with self.translate("CreateQueue", name):
                    reply = await client.create_queue(QueueName=name, Attributes=self._attributes())
            except BrokerUnavailableError:
                raise
            except BrokerError as exc:  # other attributes, no sqs:CreateQueue, deleted recently
                refused = exc
            else:
                return str(reply["QueueUrl"])
        try:
            with self.translate("GetQueueUrl", name):
                return str((await client.get_queue_url(QueueName=name))["QueueUrl"])
        except _MissingQueueError:
            if refused is not None:  # why it could not be created says more
                raise refused from refused.__cause__
            raise BrokerError(
                f"SQS queue {name!r} does not exist: create it, or set"
                " POLYQUEUE_SQS_CREATE_QUEUES=true",
                broker=BROKER,
            ) from None

    def _attributes(self) -> dict[str, str]:
        attributes = {"VisibilityTimeout": str(self._visibility)}
        if self._settings.fifo:
            attributes |= {
                "FifoQueue": "true",
                "ContentBasedDeduplication": "false",
                "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId",
            }
        return attributes

    # -- messages -----------------------------------------------------------------------------

    async def send_batch(self, queue: str, entries: Sequence[dict[str, Any]]) -> None:
        """SendMessageBatch (at most ten entries); any failed entry raises."""
        url = await self.queue_url(queue)
        with self.translate("SendMessageBatch", queue):
            reply = await self._require().send_message_batch(QueueUrl=url, Entries=list(entries))
        failed = reply.get("Failed") or []
        if failed:
            error = BrokerUnavailableError if _server_fault(failed) else BrokerError
            raise error(f"SQS SendMessageBatch: {_describe(failed)}", broker=BROKER)

    async def receive(
        self, queue: str, max_messages: int, wait_seconds: int
    ) -> list[dict[str, Any]]:
        """ReceiveMessage: up to `max_messages` (at most ten), long-polling `wait_seconds`."""
        url = await self.queue_url(queue)
        with self.translate("ReceiveMessage", queue):
            reply = await self._require().receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=self._visibility,
            )
        return list(reply.get("Messages") or [])

    async def delete_batch(self, queue: str, receipts: Sequence[str]) -> None:
        """DeleteMessageBatch (at most ten); stale receipts are ignored."""
        url = await self.queue_url(queue)
        with self.translate("DeleteMessageBatch", queue):
            reply = await self._require().delete_message_batch(
                QueueUrl=url, Entries=_receipt_entries(receipts)
            )
        _check_entries("DeleteMessageBatch", reply)

    async def change_visibility_batch(
        self, queue: str, receipts: Sequence[str], seconds: int
    ) -> None:
        """ChangeMessageVisibilityBatch (at most ten); stale receipts are ignored."""
        url = await self.queue_url(queue)
        entries = [entry | {"VisibilityTimeout": seconds} for entry in _receipt_entries(receipts)]
        with self.translate("ChangeMessageVisibilityBatch", queue):
            reply = await self._require().change_message_visibility_batch(
                QueueUrl=url, Entries=entries
            )
        _check_entries("ChangeMessageVisibilityBatch", reply)

    async def depth(self, queue: str) -> int:
        """GetQueueAttributes: the messages the queue holds, visible, in flight or delayed
        (SQS's approximate counts, which may lag behind by a minute)."""
        url = await self.queue_url(queue)
        with self.translate("GetQueueAttributes", queue):
            reply = await self._require().get_queue_attributes(
                QueueUrl=url, AttributeNames=list(_DEPTH_ATTRIBUTES)
            )
        attributes = reply.get("Attributes") or {}
        return sum(int(attributes.get(name, 0)) for name in _DEPTH_ATTRIBUTES)

    # -- errors -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def translate(self, operation: str, queue: str) -> Iterator[None]:
        """Turn botocore errors into `BrokerUnavailableError` / `BrokerError`."""
        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in MISSING_QUEUE_CODES:
                self._urls.pop(queue, None)  # deleted, or the endpoint lost its state
                raise _MissingQueueError(f"SQS {operation} on {queue!r}: {exc}") from exc
            error = BrokerUnavailableError if code in RETRYABLE_CODES else BrokerError
            raise error(f"SQS {operation}: {exc}", broker=BROKER) from exc
        except UNAVAILABLE as exc:
            raise BrokerUnavailableError(f"SQS {operation}: {exc}", broker=BROKER) from exc
        except NoCredentialsError as exc:
            raise BrokerError(
                f"SQS {operation}: no AWS credentials found in the AWS chain", broker=BROKER
            ) from exc
        except BotoCoreError as exc:
            raise BrokerError(f"SQS {operation}: {exc}", broker=BROKER) from exc


class _MissingQueueError(BrokerError):
    """The queue does not exist (any more): its cached URL was dropped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, broker=BROKER)


_DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def _receipt_entries(receipts: Sequence[str]) -> list[dict[str, Any]]:
    return [{"Id": str(i), "ReceiptHandle": receipt} for i, receipt in enumerate(receipts)]


def _check_entries(operation: str, reply: dict[str, Any]) -> None:
    failed = [f for f in reply.get("Failed") or [] if f.get("Code") not in STALE_RECEIPT_CODES]
    stale = len(reply.get("Failed") or []) - len(failed)
    if stale:
        log.debug("SQS %s: %d stale receipts ignored", operation, stale)
    if failed:
        error = BrokerUnavailableError if _server_fault(failed) else BrokerError
        raise error(f"SQS {operation}: {_describe(failed)}", broker=BROKER)


def _server_fault(failed: list[dict[str, Any]]) -> bool:
    return any(not entry.get("SenderFault", False) for entry in failed)


def _describe(failed: list[dict[str, Any]]) -> str:
    first = failed[0]
    return f"{len(failed)} entries failed, first: {first.get('Code')}: {first.get('Message')}"
