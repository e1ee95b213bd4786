"""`WorkflowClient`: building, enqueueing, reading and cancelling workflows, mixed into the
app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polyqueue.control import control_jobs
from polyqueue.dependencies import insert_workflow
from polyqueue.events import JobEnqueued
from polyqueue.job import JobId
from polyqueue.plugins import emit
from polyqueue.psycopg_executor import adapt_connection
from polyqueue.workflow import EnqueuedWorkflow, OnFailure, Workflow
from polyqueue.workflow_state import WorkflowInfo, WorkflowSummary, read_workflow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pluggy
    from pydantic import BaseModel

    from polyqueue.middleware import EnqueueContext
    from polyqueue.registry import HandlerRef
    from polyqueue.runtime import Runtime
    from polyqueue.store import InsertedJob, SqlExecutor

__all__ = ["WorkflowClient"]


class WorkflowClient:
    """Workflows of a started app (`Polyqueue` is one): jobs that wait for other jobs."""

    plugin_manager: pluggy.PluginManager

    if TYPE_CHECKING:  # provided by Polyqueue

        @property
        def runtime(self) -> Runtime: ...

        def handler_name(self, ref: HandlerRef) -> str: ...

    def workflow(self, name: str = "workflow", *, on_failure: OnFailure = "cancel") -> Workflow:
        """A new, empty workflow: add nodes (`add`, `chain`, `group`, `chord`), then
        `await wf.enqueue()`. `on_failure` is the default policy of its edges."""
        return Workflow(
            name, on_failure=on_failure, name_of=self.handler_name, submit=self._submit_workflow
        )

    async def chain(
        self,
        first: HandlerRef,
        payload: BaseModel | Mapping[str, Any],
        *then: HandlerRef,
        name: str = "chain",
        on_failure: OnFailure = "cancel",
        connection: SqlExecutor | None = None,
    ) -> EnqueuedWorkflow:
        """Enqueue a chain: `first(payload)`, then each handler of `then` given the previous
        step's result as its payload (see `Workflow.chain`)."""
        wf = self.workflow(name, on_failure=on_failure)
        wf.chain(first, payload, *then)
        return await wf.enqueue(connection=connection)

    async def group(
        self,
        handler: HandlerRef,
        payloads: Sequence[BaseModel | Mapping[str, Any]],
        *,
        name: str = "group",
        connection: SqlExecutor | None = None,
    ) -> EnqueuedWorkflow:
        """Enqueue a group: one job of `handler` per payload, as one workflow."""
        wf = self.workflow(name)
        wf.group(handler, payloads)
        return await wf.enqueue(connection=connection)

    async def chord(
        self,
        handler: HandlerRef,
        payloads: Sequence[BaseModel | Mapping[str, Any]],
        callback: HandlerRef,
        callback_payload: BaseModel | Mapping[str, Any] | None = None,
        *,
        name: str = "chord",
        on_failure: OnFailure = "cancel",
        connection: SqlExecutor | None = None,
    ) -> EnqueuedWorkflow:
        """Enqueue a chord: a group of `handler`, then `callback` once all have finished
        (see `Workflow.chord`); the callback's job id is the last of `job_ids`."""
        wf = self.workflow(name, on_failure=on_failure)
        wf.chord(handler, payloads, callback, callback_payload)
        return await wf.enqueue(connection=connection)

    async def get_workflow(self, workflow_id: int) -> WorkflowInfo:
        """The workflow with every job's state and edges; `WorkflowNotFoundError` if none."""
        return await read_workflow(self.runtime.store, workflow_id)

    async def list_workflows(self, limit: int = 50) -> list[WorkflowSummary]:
        """The newest workflows, each with its jobs counted per status."""
        rows = await self.runtime.store.workflow_find(limit)
        return [WorkflowSummary.from_row(row) for row in rows]

    async def cancel_workflow(self, workflow_id: int) -> list[int]:
        """Cancel every job of the workflow that has not finished; return their ids. Jobs of
        other workflows that depend on them follow their edges' policies."""
        await self.get_workflow(workflow_id)  # WorkflowNotFoundError if there is none
        unfinished = await self.runtime.store.workflow_unfinished(workflow_id)
        return await control_jobs(self.runtime, "cancel", unfinished, "")

    async def _submit_workflow(
        self, workflow: Workflow, connection: SqlExecutor | None
    ) -> EnqueuedWorkflow:
        rows = workflow.rows(self.runtime.producer)
        inserted = await insert_workflow(self.runtime, rows, adapt_connection(connection))
        self._emit_enqueued(rows.names, inserted.jobs)
        return EnqueuedWorkflow(inserted.workflow_id, [job.id for job in inserted.jobs])

    async def _enqueue_dependent(self, context: EnqueueContext) -> list[int]:
        """`enqueue`/`enqueue_many` with `depends_on`: every payload's job waits for those
        jobs (an insert of its own kind: no workflow row)."""
        options = context.options
        wf = Workflow(
            None,
            on_failure=options.on_failure,  # type: ignore[arg-type]  # checked by Workflow
            name_of=self.handler_name,
            submit=self._submit_workflow,
        )
        for payload in context.payloads:
            wf.add_with(context.name, payload, options, after=options.depends_on or ())
        done = await wf.enqueue(connection=context.connection)
        return [JobId(job_id) for job_id in done.job_ids]

    def _emit_enqueued(self, names: Sequence[str], jobs: Sequence[InsertedJob]) -> None:
        if not self.plugin_manager.hook.polyqueue_job_enqueued.get_hookimpls():
            return
        for name, job in zip(names, jobs, strict=True):
            event = JobEnqueued(job.id, name, job.queue, job.status == "scheduled")
            emit(self.plugin_manager, "polyqueue_job_enqueued", event)
