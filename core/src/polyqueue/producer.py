"""`Producer`: turns enqueue calls into job rows and notices, transactionally where it can."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from polyqueue.batching import InsertBatcher
from polyqueue.exceptions import HandlerNotFoundError, InvalidPayloadError, PolyqueueError
from polyqueue.flow import flow_channel
from polyqueue.handlers import check_storable
from polyqueue.job import NewJobs
from polyqueue.notices import notice_message

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import BaseModel

    from polyqueue.broker import Broker, Message
    from polyqueue.handlers import Handler
    from polyqueue.publisher import NoticePublisher
    from polyqueue.settings import PolyqueueSettings
    from polyqueue.store import InsertedJob, JobStore, SqlExecutor

__all__ = [
    "MAX_UNIQUE_KEY_LENGTH",
    "EnqueueOptions",
    "Producer",
    "Unique",
    "notices_of",
    "payload_key",
]

log = logging.getLogger(__name__)

_NOTIFY_CHUNK = 200  # ids per outbox notification, well under PostgreSQL's 8000-byte payload

MAX_UNIQUE_KEY_LENGTH = 255
"""Characters of an explicit unique key (a derived key is 65 plus the handler's name)."""

Unique = bool | str | Sequence[str] | None
"""`unique=` of an enqueue: True (a key from the handler and the payload), a key, or (for
`enqueue_many`) one key per payload; None or False for none."""


class EnqueueOptions:
    """Per-call options of `enqueue`, resolved against the handler's defaults."""

    __slots__ = (
        "depends_on",
        "headers",
        "idempotency_key",
        "max_attempts",
        "on_failure",
        "priority",
        "queue",
        "run_at",
        "unique",
        "unique_for",
    )

    def __init__(
        self,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        unique: Unique = None,
        unique_for: float | timedelta | None = None,
        depends_on: Sequence[int] | None = None,
        on_failure: str = "cancel",
    ) -> None:
        if delay is not None and run_at is not None:
            raise ValueError("pass either delay or run_at, not both")
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        if run_at is not None and run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
        self.run_at = datetime.now(UTC) + timedelta(seconds=delay) if delay else run_at
        self.priority = priority
        self.queue = queue
        self.idempotency_key = idempotency_key
        self.max_attempts = _check_max_attempts(max_attempts)
        self.headers = _check_headers(headers)
        self.unique = _check_unique(unique)
        self.unique_for = _check_unique_for(unique_for, self.unique)
        if self.unique and idempotency_key is not None:
            raise InvalidPayloadError("pass either idempotency_key or unique, not both")
        self.depends_on = _check_depends_on(depends_on, self.unique or idempotency_key)
        self.on_failure = on_failure


def _check_depends_on(depends_on: Sequence[int] | None, keyed: object) -> list[int] | None:
    """None, or job ids (each once); not with a unique key or an idempotency key."""
    if depends_on is None:
        return None
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Sequence):
        raise InvalidPayloadError(
            f"depends_on must be a list of job ids, not {type(depends_on).__name__}"
        )
    for job_id in depends_on:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise InvalidPayloadError(f"depends_on must hold job ids (int), not {job_id!r}")
    if keyed:
        raise InvalidPayloadError(
            "depends_on cannot be combined with unique or idempotency_key: a waiting job"
            " holds no key"
        )
    return list(dict.fromkeys(depends_on))


def _check_max_attempts(value: int | None) -> int | None:
    """None (the handler's), or a whole number of at least 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidPayloadError(
            f"max_attempts must be a whole number of at least 1, not {value!r}"
        )
    return value


def _check_unique(unique: Unique) -> bool | str | list[str] | None:
    """None, True, a key, or a list of keys; each key a non-empty string that fits."""
    if unique is None or isinstance(unique, bool):
        return unique or None
    if isinstance(unique, str):
        return _check_key(unique, "unique")
    if not isinstance(unique, Sequence):
        raise InvalidPayloadError(
            f"unique must be True, a key (str) or a list of keys, not {type(unique).__name__}"
        )
    return [_check_key(key, f"unique[{n}]") for n, key in enumerate(unique)]


def _check_key(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidPayloadError(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidPayloadError(f"{what} must not be empty")
    if len(key) > MAX_UNIQUE_KEY_LENGTH:
        raise InvalidPayloadError(
            f"{what} must be at most {MAX_UNIQUE_KEY_LENGTH} characters, not {len(key)}"
        )
    if "\x00" in key:
        raise InvalidPayloadError(f"{what} contains a NUL character, which PostgreSQL refuses")
    return key


def _check_unique_for(value: float | timedelta | None, unique: object) -> float | None:
    """None, or a finite number of seconds above 0 (a timedelta counts its seconds)."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise InvalidPayloadError(
            f"unique_for must be a number of seconds above 0 or a timedelta, not {value!r}"
        )
    if not unique:
        raise InvalidPayloadError("unique_for needs unique: pass unique=True or a key too")
    return float(seconds)


def payload_key(name: str, payload_json: str) -> str:
    """The unique key of `unique=True`: the handler's name and a digest of the payload's
    canonical JSON (keys sorted, no spaces), so equal payloads give equal keys."""
    canonical = json.dumps(
        json.loads(payload_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return f"{name}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _unique_keys(
    name: str, unique: bool | str | list[str] | None, payloads: Sequence[str]
) -> list[str] | None:
    """One key per payload, as `unique` (checked by `_check_unique`) asks."""
    if unique is None or unique is False:
        return None
    if unique is True:
        return [payload_key(name, payload) for payload in payloads]
    keys = [unique] if isinstance(unique, str) else unique
    if len(keys) != len(payloads):
        raise InvalidPayloadError(
            f"unique must hold one key per payload: {len(keys)} keys for {len(payloads)} payloads"
        )
    return keys


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers as a dict of strings; anything else is refused before it is stored, since
    every later read of the job (`get_job`, `wait_for`, `inspect`) expects strings."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidPayloadError(
            f"headers must be a mapping of str to str, not {type(headers).__name__}"
        )
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidPayloadError(
                f"headers must map str to str: {key!r} maps to a {type(value).__name__}"
                if isinstance(key, str)
                else f"headers must map str to str: the key {key!r} is a {type(key).__name__}"
            )
    result = dict(headers)
    if result:
        check_storable(json.dumps(result), "headers")
    return result


class Producer:
    """Inserts jobs and publishes their notices.

    - A broker whose notices are rows of the core's `broker_messages` table (`announce_channel`
      set from its `Colocation`, the built-in `postgres` broker): one statement inserts the
      jobs and their notices, in the caller's transaction or as its own: one round trip, one
      commit.
    - Own transaction: insert (one statement, its own commit), then publish; a transactional
      broker publishes inside one transaction with the insert instead.
    - Caller's connection: a transactional broker publishes inside the caller's transaction;
      any other broker is told through `NOTIFY`, which PostgreSQL delivers only on commit, and
      this process's outbox relay publishes then. Rolled back means no job and no notice.

    Single jobs in their own transaction with neither an idempotency nor a unique key go
    through an `InsertBatcher`: concurrent calls share one statement and one commit.
    """

    def __init__(
        self,
        store: JobStore,
        broker: Broker,
        publisher: NoticePublisher,
        *,
        handlers: Mapping[str, Handler],
        settings: PolyqueueSettings,
        outbox_channel: str,
        announce_channel: str | None = None,
        key_functions: Mapping[str, Callable[[BaseModel], str]] | None = None,
    ) -> None:
        self._store = store
        self._prepared: set[str] = set()  # queues the broker said it can carry
        self._key_functions = key_functions or {}
        self._announce_channel = announce_channel
        self._broker = broker
        self._publisher = publisher
        self._handlers = handlers
        self._settings = settings
        self.outbox_channel = outbox_channel
        self._flow_channel = flow_channel(settings)
        self._batcher = InsertBatcher(self._insert_batch)

    def build(
        self, name: str, payloads: Sequence[BaseModel | Mapping[str, Any]], options: EnqueueOptions
    ) -> NewJobs:
        """Validate and encode `payloads` for handler `name`."""
        handler = self._handlers.get(name)
        if handler is None:
            raise HandlerNotFoundError(name, list(self._handlers))
        limit = self._settings.max_payload_bytes
        validated = [handler.encode(payload, limit) for payload in payloads]
        encoded = [text for _, text in validated]
        return NewJobs(
            name=name,
            queue=options.queue or handler.queue,
            payloads=encoded,
            headers=json.dumps(_check_headers(options.headers)),  # middleware may add some
            priority=options.priority,
            max_attempts=options.max_attempts or handler.max_attempts,
            max_run_seconds=handler.max_run_seconds,
            timeout_strategy=handler.timeout_strategy,
            idempotency_key=options.idempotency_key,
            run_at=options.run_at,
            unique_keys=_unique_keys(name, options.unique, encoded),
            unique_for=options.unique_for,
            concurrency_keys=self._concurrency_keys(handler, [model for model, _ in validated]),
        )

    def _concurrency_keys(self, handler: Handler, models: Sequence[BaseModel]) -> list[str] | None:
        """Each validated payload's flow-control key, for a handler with a `concurrency_key`."""
        compute = self._key_functions.get(handler.name)
        if compute is None:
            return None
        keys = []
        for position, model in enumerate(models):
            try:
                keys.append(compute(model))
            except Exception as exc:  # the user's key function: anything it raises is refused
                where = f" (payload {position})" if len(models) > 1 else ""
                raise InvalidPayloadError(
                    f"handler {handler.name!r}: the concurrency key of the payload{where}"
                    f" could not be computed: {type(exc).__name__}: {exc}"
                ) from exc
        return keys

    async def insert(self, jobs: NewJobs, connection: SqlExecutor | None) -> list[InsertedJob]:
        """Insert `jobs` and make sure their notices follow; return the rows in order. Jobs
        that flow control holds back get no notice: the workers are told to look for them
        instead (one `NOTIFY` on the flow channel, with the commit)."""
        if jobs.queue not in self._prepared:  # a queue the broker refuses fails before the insert
            await self._broker.prepare_queue(jobs.queue)
            self._prepared.add(jobs.queue)
        inserted = await self._insert(jobs, connection)
        if any(row.created and row.status == "queued" and row.held_back for row in inserted):
            executor = connection if connection is not None else self._store.pool
            await self._store.notify(self._flow_channel, "", executor)
        return inserted

    async def _insert(self, jobs: NewJobs, connection: SqlExecutor | None) -> list[InsertedJob]:
        if connection is None and _batchable(jobs):
            return [await self._batcher.insert(jobs)]
        if self._announce_channel is not None:
            executor = connection if connection is not None else self._store.pool
            return await self._store.job_insert_many(jobs, executor, self._announce_channel)
        if connection is not None:
            return await self._insert_in(connection, jobs)
        if self._broker.capabilities.transactional_publish:
            async with self._store.transaction() as own:
                return await self._insert_in(own, jobs)
        inserted = await self._store.job_insert_many(jobs, self._store.pool)
        await self._publisher.publish(_notices(inserted))  # a batch: its notices, then return
        return inserted

    @property
    def announce_channel(self) -> str | None:
        """The channel of a broker whose notices are rows of `broker_messages` (statements
        write them beside the jobs), else None."""
        return self._announce_channel

    async def _insert_batch(self, batch: Sequence[NewJobs]) -> list[InsertedJob]:
        """The single jobs of concurrent calls, in one statement of their own transaction."""
        if self._announce_channel is not None:
            return await self._store.job_insert_batch(
                batch, self._store.pool, self._announce_channel
            )
        if self._store.sends_notices:  # the statement sends them (`Broker.notice_sender`)
            inserted = await self._store.job_insert_batch(batch, self._store.pool)
            await self._publish_unsent([row for row in inserted if not row.notice_sent])
            return inserted
        if self._broker.capabilities.transactional_publish:
            async with self._store.transaction() as own:
                inserted = await self._store.job_insert_batch(batch, own)
                if messages := _notices(inserted):
                    await self._broker.publish_in(own, messages)
                return inserted
        inserted = await self._store.job_insert_batch(batch, self._store.pool)
        self._publisher.hand_off(_notices(inserted))
        return inserted

    async def _publish_unsent(self, inserted: Sequence[InsertedJob]) -> None:
        """Publish, after the commit, the notices a `notice_sender` skipped (their queue was
        gone, dropped by hand): the broker prepares the queue again first. Never raises: the
        jobs are committed, and the publisher retries."""
        messages = _notices(inserted)
        for queue in sorted({message.queue for message in messages}):
            try:
                await self._broker.prepare_queue(queue)
            except PolyqueueError as exc:
                log.warning("preparing queue %r again failed: %s", queue, exc)
        await self._publisher.publish(messages)

    async def close(self) -> None:
        """Wait for the shared inserts in flight."""
        await self._batcher.close()

    async def _insert_in(self, connection: SqlExecutor, jobs: NewJobs) -> list[InsertedJob]:
        inserted = await self._store.job_insert_many(jobs, connection)
        await self.announce_in(connection, inserted)
        return inserted

    async def announce_in(self, connection: SqlExecutor, inserted: Sequence[InsertedJob]) -> None:
        """Make the notices of `inserted` (written on `connection`, not committed yet) follow
        the commit: published in the transaction by a transactional broker, else through the
        outbox (`NOTIFY`, delivered on commit). Nothing to do when the statement that wrote
        them wrote their notices too (`announce_channel`)."""
        if self._announce_channel is not None:
            return
        messages = _notices(inserted)
        if messages and self._broker.capabilities.transactional_publish:
            await self._broker.publish_in(connection, messages)
        elif messages:
            rows = [
                [m.queue, m.priority, row.id]
                for m, row in zip(messages, _created(inserted), strict=True)
            ]
            for start in range(0, len(rows), _NOTIFY_CHUNK):
                payload = json.dumps(rows[start : start + _NOTIFY_CHUNK])
                await self._store.notify(self.outbox_channel, payload, connection)

    async def relay_outbox(self, payload: str) -> None:
        """Publish the notices of jobs committed in a caller's transaction."""
        try:
            messages = [
                notice_message(int(job_id), str(queue), int(priority))
                for queue, priority, job_id in json.loads(payload)
            ]
        except (ValueError, TypeError) as exc:  # anyone may NOTIFY the channel
            log.warning("ignoring an outbox notification that is not one: %s", exc)
            return
        await self._publisher.publish(messages)


def _batchable(jobs: NewJobs) -> bool:
    """One job without a key: it may share a statement with other calls' jobs."""
    return len(jobs.payloads) == 1 and jobs.idempotency_key is None and jobs.unique_keys is None


def _created(inserted: Sequence[InsertedJob]) -> list[InsertedJob]:
    return [
        row
        for row in inserted
        if row.created and row.status == "queued" and not row.held_back  # flow_claim starts those
    ]


def notices_of(inserted: Sequence[InsertedJob]) -> list[Message]:
    """The notices of the jobs of an insert that need one: created, queued, not held back."""
    return _notices(inserted)


def _notices(inserted: Sequence[InsertedJob]) -> list[Message]:
    return [notice_message(row.id, row.queue, row.priority) for row in _created(inserted)]
