"""`JobClient`: what any process does with jobs (enqueue, read, control), mixed into the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel

from polyqueue.control import ACTIONS, Action, control_jobs
from polyqueue.events import JobEnqueued
from polyqueue.exceptions import HandlerNotFoundError, InvalidPayloadError
from polyqueue.job import JobId, JobIds
from polyqueue.middleware import EnqueueContext
from polyqueue.plugins import emit
from polyqueue.producer import EnqueueOptions
from polyqueue.psycopg_executor import adapt_connection
from polyqueue.results import stored_result, typed_result, wait_until_finished

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    import pluggy

    from polyqueue.handlers import Handler
    from polyqueue.job import Job
    from polyqueue.registry import HandlerRef
    from polyqueue.runtime import Runtime
    from polyqueue.store import JobStore, SqlExecutor
    from polyqueue.workflow import OnFailure

__all__ = ["JobClient", "Payload"]

T = TypeVar("T")
Payload = BaseModel | Mapping[str, Any]
"""A job's payload: an instance of its handler's model, or a mapping validated as one."""


class JobClient:
    """Enqueue, read and control jobs of a started app (`Polyqueue` is one)."""

    handlers: dict[str, Handler]
    plugin_manager: pluggy.PluginManager
    _enqueue_chain: Callable[[EnqueueContext], Awaitable[list[int]]]

    if TYPE_CHECKING:  # provided by Polyqueue

        @property
        def runtime(self) -> Runtime: ...

        @property
        def store(self) -> JobStore: ...

        def handler_name(self, ref: HandlerRef) -> str: ...

        async def _enqueue_dependent(self, context: EnqueueContext) -> list[int]: ...

    # -- enqueue ------------------------------------------------------------------------------

    async def enqueue(
        self,
        handler: HandlerRef,
        payload: Payload,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        unique: bool | str | None = None,
        unique_for: float | timedelta | None = None,
        depends_on: Sequence[int] | None = None,
        on_failure: OnFailure = "cancel",
        connection: SqlExecutor | None = None,
    ) -> JobId:
        """Enqueue one job; return its id, a `JobId` whose `created` is False when the
        idempotency key or the unique key was held by an existing job (its id, then).

        `unique=True` (a key from the handler and the payload) or `unique="key"`: no new job
        while a job holding that key is scheduled, queued or running, nor, with `unique_for`
        (seconds or a timedelta), within that long after the holder was enqueued.
        With `connection`, the job is inserted in that connection's transaction: rolled back
        means no job, no notice and no key held.
        `depends_on=[job ids]`: the job waits (`waiting`) until those jobs have finished;
        a dependency that failed or was cancelled cancels it (`on_failure="cancel"`), or it
        runs anyway (`"run"`), or that dependency is ignored (`"ignore"`); see workflows.md.
        """
        if unique is not None and not isinstance(unique, bool | str):
            raise InvalidPayloadError(
                f"unique must be True or a key (str), not {type(unique).__name__}"
            )
        options = EnqueueOptions(
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            headers=headers,
            unique=unique,
            unique_for=unique_for,
            depends_on=depends_on,
            on_failure=on_failure,
        )
        context = EnqueueContext(self.handler_name(handler), [payload], options, connection)
        (job_id,) = await self._enqueue_chain(context)
        return _job_id(job_id)

    async def enqueue_many(
        self,
        handler: HandlerRef,
        payloads: Sequence[Payload],
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        unique: bool | Sequence[str] | None = None,
        unique_for: float | timedelta | None = None,
        depends_on: Sequence[int] | None = None,
        on_failure: OnFailure = "cancel",
        connection: SqlExecutor | None = None,
    ) -> JobIds:
        """Enqueue many jobs of one handler in one round trip; return their ids in order
        (`JobIds`: a `list[int]` of `JobId`s).

        Every payload is validated first: one invalid payload enqueues nothing. `unique` is
        True (a key from each payload) or one key per payload, as for `enqueue`; a payload
        whose key is held, by an existing job or an earlier payload of the call, gets that
        job's id with `created` False. `depends_on` and `on_failure`: every job waits for
        those jobs, as for `enqueue`.
        """
        if isinstance(unique, str):
            raise InvalidPayloadError(
                "unique of enqueue_many must be True or a list of keys, one per payload, not a str"
            )
        options = EnqueueOptions(
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            max_attempts=max_attempts,
            headers=headers,
            unique=unique,
            unique_for=unique_for,
            depends_on=depends_on,
            on_failure=on_failure,
        )
        if not payloads and not (isinstance(unique, Sequence) and unique):
            return JobIds()
        context = EnqueueContext(self.handler_name(handler), payloads, options, connection)
        return JobIds(_job_id(job_id) for job_id in await self._enqueue_chain(context))

    async def _enqueue(self, context: EnqueueContext) -> list[int]:
        """The innermost step of the enqueue middleware chain: insert, publish, emit."""
        if context.options.depends_on is not None:
            return await self._enqueue_dependent(context)
        jobs = self.runtime.producer.build(context.name, context.payloads, context.options)
        inserted = await self.runtime.producer.insert(jobs, adapt_connection(context.connection))
        if self.plugin_manager.hook.polyqueue_job_enqueued.get_hookimpls():  # else no events
            for row in inserted:
                if row.created:
                    event = JobEnqueued(row.id, context.name, row.queue, row.status == "scheduled")
                    emit(self.plugin_manager, "polyqueue_job_enqueued", event)
        return [JobId(row.id, created=row.created) for row in inserted]

    # -- reading ------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        """The job as stored now; `JobNotFoundError` if there is none."""
        return await self.store.job_get(job_id)

    async def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """Wait until the job is succeeded, failed or cancelled; give up after `timeout` s."""
        return await wait_until_finished(self.store, job_id, timeout)

    async def get_job_result(self, job_id: int) -> Any:
        """The result as stored (decoded JSON); `ResultUnavailableError` unless it succeeded."""
        return stored_result(await self.get_job(job_id))

    @overload
    async def get_job_result_typed(self, job_id: int, model: type[T]) -> T: ...
    @overload
    async def get_job_result_typed(self, job_id: int, model: Any) -> Any: ...
    async def get_job_result_typed(self, job_id: int, model: Any) -> Any:
        """The result validated as `model` (a BaseModel or any type pydantic understands)."""
        return typed_result(await self.get_job(job_id), model)

    async def get_job_result_typed_via_registry(self, job_id: int) -> Any:
        """The result validated as the return annotation of the job's registered handler."""
        job = await self.get_job(job_id)
        handler = self.handlers.get(job.name)
        if handler is None:
            raise HandlerNotFoundError(job.name, list(self.handlers))
        return typed_result(job, handler.returns)

    # -- control ------------------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a scheduled, queued or running job; False if it had already finished."""
        return await self._control("cancel", [job_id]) == [job_id] or await self._missing(job_id)

    async def requeue(self, job_id: int) -> bool:
        """Queue a failed, cancelled (or running) job again with fresh attempts.

        Returns False if the job's status does not allow it (scheduled, queued, succeeded).
        """
        return await self._control("requeue", [job_id]) == [job_id] or await self._missing(job_id)

    async def fail(self, job_id: int, reason: str = "failed by an operator") -> bool:
        """Fail a scheduled, queued or running job now; False if it had already finished."""
        return await self._control("fail", [job_id], reason) == [job_id] or await self._missing(
            job_id
        )

    async def _missing(self, job_id: int) -> bool:
        await self.get_job(job_id)  # raises JobNotFoundError if there is no such job
        return False

    async def control_many(
        self, action: str, job_ids: Sequence[int], reason: str = ""
    ) -> list[int]:
        """Apply `action` (cancel, requeue, fail) to `job_ids`; return the ids it changed."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use cancel, requeue or fail")
        return await self._control(action, job_ids, reason or "failed by an operator")

    async def _control(self, action: Action, job_ids: Sequence[int], reason: str = "") -> list[int]:
        return await control_jobs(self.runtime, action, job_ids, reason)


def _job_id(job_id: int) -> JobId:
    """A `JobId` as the chain returned it; an enqueue middleware that made up a plain int
    is taken to have created the job."""
    return job_id if isinstance(job_id, JobId) else JobId(job_id)
