"""`Workflow`: jobs that wait for other jobs, built node by node (or as a chain, a group, a
chord) and enqueued in one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from polyqueue.exceptions import DependencyCycleError, InvalidPayloadError
from polyqueue.job import JobId, JobIds
from polyqueue.producer import EnqueueOptions
from polyqueue.store.records import NewWorkflow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from datetime import datetime, timedelta

    from pydantic import BaseModel

    from polyqueue.producer import Producer
    from polyqueue.store import SqlExecutor

__all__ = [
    "ON_FAILURE",
    "EnqueuedWorkflow",
    "Node",
    "OnFailure",
    "Workflow",
    "check_on_failure",
]

OnFailure = Literal["cancel", "run", "ignore"]
"""What a dependent does when a dependency fails or is cancelled: `cancel` it (and, down
their `cancel` edges, its own dependents), `run` it anyway, or `ignore` that dependency (it
runs, and `ctx.results_of` leaves the dependency out)."""

ON_FAILURE: tuple[OnFailure, ...] = get_args(OnFailure)

_HandlerRef = str | Any  # a name or a registered function (registry.HandlerRef)


def check_on_failure(policy: object) -> OnFailure:
    """`policy` if it is one of `cancel`, `run`, `ignore`; else `InvalidPayloadError`."""
    if policy not in ON_FAILURE:
        raise InvalidPayloadError(f"on_failure must be one of cancel, run, ignore; not {policy!r}")
    return policy


@dataclass(frozen=True, eq=False, slots=True)
class Node:
    """A job of a workflow being built: pass it in `after=` of the nodes that wait for it,
    and look its job id up in the `EnqueuedWorkflow` once enqueued."""

    workflow: Workflow = field(repr=False)
    position: int
    """0-based, in the order the nodes were added."""
    name: str
    """The handler's registered name."""

    def __str__(self) -> str:
        return f"node {self.position} ({self.name})"


@dataclass(slots=True)
class _Spec:
    name: str
    payload: BaseModel | Mapping[str, Any] | None
    options: EnqueueOptions
    payload_from: int | None
    edges: list[tuple[int | None, int | None, OnFailure]]  # (node, existing job, policy)


class Workflow:
    """Jobs with dependencies, enqueued together in one transaction.

    ```python
    wf = app.workflow("report")
    fetch = wf.add(fetch_page, Page(url=u))
    parse = wf.add(parse_page, after=[fetch], payload_from=fetch)  # fetch's result as payload
    done = await wf.enqueue()
    done[parse]  # the job id of that node
    ```

    `on_failure` is the workflow's default policy for its edges (each `add` and each edge of
    `after=` may choose another).
    """

    def __init__(
        self,
        name: str | None,
        *,
        on_failure: OnFailure,
        name_of: Callable[[_HandlerRef], str],
        submit: Callable[[Workflow, SqlExecutor | None], Awaitable[EnqueuedWorkflow]],
    ) -> None:
        self.name = name
        self.on_failure = check_on_failure(on_failure)
        self._name_of = name_of
        self._submit = submit
        self._specs: list[_Spec] = []
        self.nodes: list[Node] = []
        """The nodes added so far, in order."""

    def __len__(self) -> int:
        return len(self.nodes)

    def add(
        self,
        handler: _HandlerRef,
        payload: BaseModel | Mapping[str, Any] | None = None,
        *,
        after: Sequence[Node | int | tuple[Node | int, OnFailure]] = (),
        on_failure: OnFailure | None = None,
        payload_from: Node | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Node:
        """Add a job of `handler` that starts once every job in `after` has finished (and
        succeeded, unless its edge's policy says otherwise); return its node.

        `payload_from=node`: the payload is that node's result, taken when this job is
        released (validated by this handler's model when it runs); `node` joins `after`.
        Without a payload or `payload_from`, the payload is `{}`.
        """
        options = EnqueueOptions(
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            max_attempts=max_attempts,
            headers=headers,
        )
        return self.add_with(
            self._name_of(handler),
            payload,
            options,
            after=after,
            on_failure=on_failure,
            payload_from=payload_from,
        )

    def add_with(
        self,
        name: str,
        payload: BaseModel | Mapping[str, Any] | None,
        options: EnqueueOptions,
        *,
        after: Sequence[Node | int | tuple[Node | int, OnFailure]] = (),
        on_failure: OnFailure | None = None,
        payload_from: Node | None = None,
    ) -> Node:
        """`add` with the handler's registered name and the options already checked."""
        policy = check_on_failure(on_failure) if on_failure is not None else self.on_failure
        edges = [self._edge(entry, policy) for entry in after]
        source = None
        if payload_from is not None:
            source = self._own(payload_from).position
            if payload is not None:
                raise InvalidPayloadError(
                    f"{name}: pass either a payload or payload_from, not both"
                )
            if all(node != source for node, _, _ in edges):
                edges.append((source, None, policy))
        elif payload is None:
            payload = {}
        node = Node(self, len(self.nodes), name)
        self._specs.append(_Spec(name, payload, options, source, _unique_edges(edges)))
        self.nodes.append(node)
        return node

    def link(self, dependency: Node, dependent: Node, on_failure: OnFailure | None = None) -> None:
        """Make `dependent` wait for `dependency` too (both nodes of this workflow)."""
        policy = check_on_failure(on_failure) if on_failure is not None else self.on_failure
        spec = self._specs[self._own(dependent).position]
        spec.edges = _unique_edges([*spec.edges, (self._own(dependency).position, None, policy)])

    def chain(
        self,
        first: _HandlerRef,
        payload: BaseModel | Mapping[str, Any],
        *then: _HandlerRef,
        after: Sequence[Node | int | tuple[Node | int, OnFailure]] = (),
        on_failure: OnFailure | None = None,
    ) -> list[Node]:
        """A chain: `first(payload)`, then each handler of `then` in turn, each given the
        previous step's result as its payload. The first step waits for `after`."""
        nodes = [self.add(first, payload, after=after, on_failure=on_failure)]
        for handler in then:
            nodes.append(self.add(handler, payload_from=nodes[-1], on_failure=on_failure))
        return nodes

    def group(
        self,
        handler: _HandlerRef,
        payloads: Sequence[BaseModel | Mapping[str, Any]],
        *,
        after: Sequence[Node | int | tuple[Node | int, OnFailure]] = (),
        on_failure: OnFailure | None = None,
    ) -> list[Node]:
        """A group: one job of `handler` per payload, run in parallel, each waiting for
        `after`. A node that waits for all of them reads their results in this order."""
        return [self.add(handler, p, after=after, on_failure=on_failure) for p in payloads]

    def chord(
        self,
        handler: _HandlerRef,
        payloads: Sequence[BaseModel | Mapping[str, Any]],
        callback: _HandlerRef,
        callback_payload: BaseModel | Mapping[str, Any] | None = None,
        *,
        after: Sequence[Node | int | tuple[Node | int, OnFailure]] = (),
        on_failure: OnFailure | None = None,
    ) -> Node:
        """A chord: a group of `handler` over `payloads`, then one `callback` job that
        starts once, when the last of them has finished, and reads all their results in
        order with `ctx.results_of(Model)`. Returns the callback's node."""
        members = self.group(handler, payloads, after=after, on_failure=on_failure)
        return self.add(callback, callback_payload, after=members, on_failure=on_failure)

    async def enqueue(self, *, connection: SqlExecutor | None = None) -> EnqueuedWorkflow:
        """Insert every node and edge in one statement (in `connection`'s transaction if
        given); jobs with nothing to wait for are queued at once. Cycles, missing jobs in
        `after`, unknown handlers and invalid payloads are refused with nothing written."""
        return await self._submit(self, connection)

    def rows(self, producer: Producer) -> NewWorkflow:
        """The rows to insert: every payload validated, the graph checked for cycles."""
        check_acyclic(
            self.nodes, [[n for n, _, _ in s.edges if n is not None] for s in self._specs]
        )
        return rows_of(self._specs, producer, self.name, self.on_failure)

    def _edge(
        self, entry: Node | int | tuple[Node | int, OnFailure], policy: OnFailure
    ) -> tuple[int | None, int | None, OnFailure]:
        if isinstance(entry, tuple):
            target, policy = entry[0], check_on_failure(entry[1])
        else:
            target = entry
        if isinstance(target, Node):
            return (self._own(target).position, None, policy)
        if isinstance(target, bool) or not isinstance(target, int):
            raise InvalidPayloadError(
                f"after= takes nodes of this workflow or job ids, not {type(target).__name__}"
            )
        return (None, int(target), policy)

    def _own(self, node: Node) -> Node:
        if not isinstance(node, Node) or node.workflow is not self:
            raise InvalidPayloadError(f"{node} is not a node of this workflow ({self.name!r})")
        return node


def _unique_edges(
    edges: list[tuple[int | None, int | None, OnFailure]],
) -> list[tuple[int | None, int | None, OnFailure]]:
    """Each dependency once (the last policy given for it wins), in first-given order."""
    seen: dict[tuple[int | None, int | None], OnFailure] = {}
    for node, existing, policy in edges:
        seen[(node, existing)] = policy
    return [(node, existing, policy) for (node, existing), policy in seen.items()]


def check_acyclic(nodes: Sequence[Node], after: Sequence[Sequence[int]]) -> None:
    """`DependencyCycleError` naming the nodes on cycles if `after` (each node's dependencies,
    by position) has any."""
    remaining = {position: set(deps) for position, deps in enumerate(after)}
    ready = [position for position, deps in remaining.items() if not deps]
    dependents: dict[int, list[int]] = {}
    for position, deps in remaining.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(position)
    while ready:
        done = ready.pop()
        del remaining[done]
        for dependent in dependents.get(done, ()):
            remaining[dependent].discard(done)
            if not remaining[dependent]:
                ready.append(dependent)
    if not remaining:
        return
    # Left: nodes on a cycle or downstream of one; keep those some remaining node waits for
    # and that wait for a remaining node themselves (peel the downstream ones off).
    stuck = set(remaining)
    changed = True
    while changed:
        waited_for = {dep for position in stuck for dep in remaining[position] if dep in stuck}
        changed = bool(stuck - waited_for)
        stuck &= waited_for
    raise DependencyCycleError([str(nodes[position]) for position in sorted(stuck)])


def rows_of(
    specs: Sequence[_Spec], producer: Producer, name: str | None, on_failure: OnFailure
) -> NewWorkflow:
    """The `workflow_insert` columns of `specs`, each payload validated by its handler."""
    built = [
        producer.build(s.name, [] if s.payload is None else [s.payload], s.options) for s in specs
    ]
    depended_on = {node for s in specs for node, _, _ in s.edges if node is not None}
    existing = sorted({job for s in specs for _, job, _ in s.edges if job is not None})
    edges = [(position + 1, s, edge) for position, s in enumerate(specs) for edge in s.edges]
    return NewWorkflow(
        names=[s.name for s in specs],
        queues=[jobs.queue for jobs in built],
        payloads=[jobs.payloads[0] if jobs.payloads else None for jobs in built],
        headers=[jobs.headers for jobs in built],
        priorities=[jobs.priority for jobs in built],
        max_attempts=[jobs.max_attempts for jobs in built],
        max_run_seconds=[jobs.max_run_seconds for jobs in built],
        timeout_strategies=[jobs.timeout_strategy for jobs in built],
        run_at=[jobs.run_at for jobs in built],
        concurrency_keys=[(jobs.concurrency_keys or [None])[0] for jobs in built],
        payload_from=[None if s.payload_from is None else s.payload_from + 1 for s in specs],
        waiting_on=[len(s.edges) for s in specs],
        has_dependents=[position in depended_on for position in range(len(specs))],
        edge_nodes=[position for position, _, _ in edges],
        edge_after_nodes=[None if node is None else node + 1 for _, _, (node, _, _) in edges],
        edge_existing=[job for _, _, (_, job, _) in edges],
        edge_policies=[policy for _, _, (_, _, policy) in edges],
        existing=existing,
        workflow_name=name,
        on_failure=on_failure,
    )


class EnqueuedWorkflow:
    """What `Workflow.enqueue` returns: the workflow's id and its jobs' ids in node order.

    `enqueued[node]` is the job id of a node of the workflow.
    """

    def __init__(self, workflow_id: int | None, job_ids: Sequence[int]) -> None:
        self.id = workflow_id
        """The workflow's id (`get_workflow`); None for an `enqueue` with `depends_on`."""
        self.job_ids = JobIds(JobId(job_id) for job_id in job_ids)
        """Every job's id, in the order the nodes were added."""

    def __getitem__(self, node: Node) -> JobId:
        return self.job_ids[node.position]

    def __len__(self) -> int:
        return len(self.job_ids)

    def __repr__(self) -> str:
        return f"EnqueuedWorkflow(id={self.id}, jobs={len(self.job_ids)})"
