"""The dashboard's pages (GET): overview, jobs, a job, workers, queues, cron, workflows.

Each page's data is gathered by a `*_data` function that its live endpoint (`live.py`)
calls too, so a live update shows exactly what a reload would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from croniter import croniter
from starlette.exceptions import HTTPException

from polyqueue.dashboard import params
from polyqueue.dashboard.chart import MINUTES, per_minute, throughput_svg
from polyqueue.dashboard.graph import MAX_DRAWN, graph_svg
from polyqueue.dashboard.queries import COUNT_CAP
from polyqueue.dashboard.state import dashboard_of
from polyqueue.exceptions import JobNotFoundError, WorkflowNotFoundError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from polyqueue.dashboard.state import Dashboard
    from polyqueue.job import Job
    from polyqueue.limits import Limits

__all__ = [
    "BULK_LIMIT",
    "cron",
    "job",
    "job_data",
    "jobs",
    "overview",
    "overview_data",
    "queues",
    "queues_data",
    "workers",
    "workers_data",
    "workflow",
    "workflow_data",
    "workflows",
]

BULK_LIMIT = 10_000
"""A bulk action on a filter changes at most this many jobs (the newest matching)."""
RUNNING_SHOWN = 25
WORKERS_SHOWN = 200
WORKFLOWS_SHOWN = 100


async def overview(request: Request) -> Response:
    """Counts per state and queue, the last hour's throughput, workers alive, running jobs."""
    dashboard = dashboard_of(request)
    data = await overview_data(dashboard)
    return dashboard.render_page(
        request, "overview.html", active="Overview", live_url="/live/overview", **data
    )


async def overview_data(dashboard: Dashboard) -> dict[str, Any]:
    """What the overview shows."""
    queries = dashboard.queries
    counts = {(r["queue"], r["status"]): r["jobs"] for r in await queries.status_counts()}
    capped = {status for (_, status), n in counts.items() if n > COUNT_CAP}
    estimates = await queries.status_estimates() if capped else {}
    return {
        "statuses": params.STATUSES,
        "queues": sorted({queue for queue, _ in counts}),
        "counts": {key: _count(n) for key, n in counts.items()},
        "totals": {
            status: _total(
                sum(min(n, COUNT_CAP) for (_, s), n in counts.items() if s == status),
                capped=status in capped,
                estimate=estimates.get(status),
            )
            for status in params.STATUSES
        },
        "chart": throughput_svg(per_minute(await queries.throughput(MINUTES))),
        "running": await queries.running_jobs(RUNNING_SHOWN),
        "workers_alive": await queries.workers_alive(),
    }


def _count(jobs: int) -> str:
    """A cell of the counts table: exact, or `10,000+` past the cap."""
    return f"{COUNT_CAP:,}+" if jobs > COUNT_CAP else f"{jobs:,}"


def _total(exact: int, *, capped: bool, estimate: int | None) -> str:
    """A status's total: exact, or past the cap the planner's estimate (`≈ 950,000`)."""
    if not capped:
        return f"{exact:,}"
    if estimate is not None and estimate > exact:
        return f"≈ {estimate:,}"
    return f"{exact:,}+"


async def jobs(request: Request) -> Response:
    """Jobs matching the filters, a page at a time (keyset on id), with bulk actions."""
    dashboard = dashboard_of(request)
    query = request.query_params
    filters = params.job_filters(query, query.getlist("status"))
    before, after = params.optional_id(query, "before"), params.optional_id(query, "after")
    if before is not None and after is not None:
        raise params.bad("before, after: give one of them, not both")
    limit = params.page_size(query)
    queries = dashboard.queries
    search_note = ""
    looked_until = None
    if filters.text:
        if after is not None:
            raise params.bad("after: a text search pages only towards older jobs (before=)")
        page = await queries.job_search(filters, before=before, limit=limit + 1)
        rows, looked_until = page.rows, page.looked_until
        if looked_until is not None and len(rows) <= limit:
            search_note = (
                f"The search looked at the newest {page.window:,} jobs matching the other "
                f"filters{' before #' + str(before) if before else ''}; use Older to search on."
            )
    else:
        rows = await queries.job_page(filters, before=before, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[-limit:] if after is not None else rows[:limit]
    base = _filter_query(request)
    older = _older_cursor(rows, more=more or after is not None, looked_until=looked_until)
    newer = rows[0]["id"] if rows and (before is not None or (after is not None and more)) else None
    return dashboard.render_page(
        request,
        "jobs.html",
        active="Jobs",
        live_url="/live/jobs?" + urlencode([("id", r["id"]) for r in rows]) if rows else "",
        rows=rows,
        filters=filters,
        raw={"since": query.get("since", ""), "until": query.get("until", "")},
        statuses=params.STATUSES,
        queue_names=[r["queue"] for r in await queries.queue_names()],
        filter_fields=base,
        bulk_limit=f"{BULK_LIMIT:,}",
        search_note=search_note,
        older_url=_page_url(request, base, "before", older),
        newer_url=_page_url(request, base, "after", newer),
    )


def _older_cursor(rows: list[Any], *, more: bool, looked_until: int | None) -> int | None:
    if looked_until is not None and not more:
        return looked_until  # nothing more matched within the window: search on below it
    return rows[-1]["id"] if rows and more else None


def _filter_query(request: Request) -> list[tuple[str, str]]:
    """The filter parameters of the request, as given (for links and the bulk form)."""
    return [
        (key, value)
        for key, value in request.query_params.multi_items()
        if key in {*params.FILTER_KEYS, "limit"} and value
    ]


def _page_url(
    request: Request, base: list[tuple[str, str]], key: str, cursor: int | None
) -> str | None:
    if cursor is None:
        return None
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{root}/jobs?" + urlencode([*base, (key, str(cursor))])


async def job(request: Request) -> Response:
    """One job: state, attempts, progress, timeline, error and traceback, result, payload."""
    dashboard = dashboard_of(request)
    data = await job_data(dashboard, request.path_params["job_id"])
    live = f"/live/jobs/{data['job'].id}"
    return dashboard.render_page(request, "job.html", active="Jobs", live_url=live, **data)


async def job_data(dashboard: Dashboard, job_id: int) -> dict[str, Any]:
    """What a job's page shows."""
    try:
        found = await dashboard.app.get_job(_known(job_id, "job"))
    except JobNotFoundError:
        raise HTTPException(404, f"no job {job_id}: it never existed or was pruned") from None
    failures, workflow_id = await dashboard.queries.job_extras(job_id)
    return {
        "job": found,
        "attempts": attempts(found, failures),
        "timeline": timeline(found, failures),
        "workflow_id": workflow_id,
    }


def attempts(found: Job, failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attempt: the failed ones as recorded, then the current one if it ran or runs."""
    rows = [{**failure, "outcome": "failed"} for failure in failures]
    recorded = {failure["attempt"] for failure in failures}
    if found.attempt and found.attempt not in recorded and found.started_at is not None:
        status = found.status.value
        rows.append(
            {
                "attempt": found.attempt,
                "at": found.finished_at or found.started_at,
                "worker": found.worker_id,
                "outcome": status if status in {"running", "succeeded"} else f"{status} (by hand)",
                "type": None,
                "message": found.progress_message if status == "running" else None,
            }
        )
    return rows


def _known(value: int, what: str) -> int:
    """`value` if it can be an id; else a 404 (ids past 64 bits exist nowhere)."""
    if not 1 <= value <= params.MAX_ID:
        raise HTTPException(404, f"no {what} {value}")
    return value


def timeline(found: Job, failures: list[dict[str, Any]]) -> list[tuple[str, datetime]]:
    """The moments of a job's life, in order."""
    moments: list[tuple[str, datetime | None]] = [
        ("created", found.created_at),
        ("due to run" if found.run_at > found.created_at else "ready", found.run_at),
        (f"attempt {found.attempt} started", found.started_at),
        ("last heartbeat", found.heartbeat_at),
        (str(found.status.value), found.finished_at),
    ]
    moments += [(f"attempt {f['attempt']} failed: {f['type']}", f["at"]) for f in failures]
    return sorted(((label, at) for label, at in moments if at is not None), key=lambda m: m[1])


async def workers(request: Request) -> Response:
    """Registered workers: host, pid, queues, current jobs, heartbeat age."""
    dashboard = dashboard_of(request)
    return dashboard.render_page(
        request,
        "workers.html",
        active="Workers",
        live_url="/live/workers",
        **await workers_data(dashboard),
    )


async def workers_data(dashboard: Dashboard) -> dict[str, Any]:
    """What the workers page shows."""
    return {"workers": await dashboard.queries.workers(WORKERS_SHOWN)}


async def queues(request: Request) -> Response:
    """Queues: paused or not, waiting and running jobs, limits; pause and resume."""
    dashboard = dashboard_of(request)
    data = await queues_data(dashboard)
    limits = await dashboard.app.flow_limits()
    return dashboard.render_page(
        request, "queues.html", active="Queues", live_url="/live/queues", limits=limits, **data
    )


async def queues_data(dashboard: Dashboard) -> dict[str, Any]:
    """What the queues table shows."""
    app = dashboard.app
    paused = {p.queue: p.paused_at for p in await app.paused_queues()}
    limits = {
        limit.name: _describe_limits(limit.limits)
        for limit in await app.flow_limits()
        if limit.scope == "queue"
    }
    rows: dict[str, dict[str, Any]] = {
        r["queue"]: dict(r) for r in await dashboard.queries.queue_names()
    }
    for name in (*paused, *limits):
        rows.setdefault(
            name, {"queue": name, "queued": 0, "scheduled": 0, "running": 0, "oldest_age": None}
        )
    for name, row in rows.items():
        row["paused_at"] = paused.get(name)
        row["limits"] = limits.get(name, "")
    return {"queues": [rows[name] for name in sorted(rows)]}


def _describe_limits(limits: Limits) -> str:
    parts = []
    if limits.concurrency is not None:
        parts.append(f"{limits.concurrency} at once")
    if limits.rate is not None:
        parts.append(str(limits.rate))
    return ", ".join(parts)


async def cron(request: Request) -> Response:
    """Cron schedules: expression, handler, last fired tick and its job, next tick."""
    dashboard = dashboard_of(request)
    now = datetime.now(UTC)
    ledger = {r["name"]: r for r in await dashboard.queries.cron_ledger()}
    known = dashboard.app.cron_schedules
    schedules = []
    for name in sorted({*ledger, *known}):
        registered = known.get(name)
        expression = registered.expression if registered else ledger[name]["expression"]
        last = ledger[name]["last_tick"] if name in ledger else None
        next_tick: datetime = croniter(expression, now).get_next(datetime)
        schedules.append(
            {
                "name": name,
                "expression": expression,
                "handler": registered.handler if registered else None,
                "last_tick": last,
                "key": f"cron:{name}:{last.isoformat()}" if last else None,
                "next_tick": next_tick,
                "next_in": (next_tick - now).total_seconds(),
            }
        )
    holders = {
        r["idempotency_key"]: r
        for r in await dashboard.queries.jobs_by_key([s["key"] for s in schedules if s["key"]])
    }
    for schedule in schedules:
        holder = holders.get(schedule["key"])
        schedule["job_id"] = holder["id"] if holder else None
        schedule["job_status"] = holder["status"] if holder else None
    return dashboard.render_page(request, "cron.html", active="Cron", schedules=schedules)


async def workflows(request: Request) -> Response:
    """The newest workflows, with their jobs counted per state."""
    dashboard = dashboard_of(request)
    found = await dashboard.app.list_workflows(limit=WORKFLOWS_SHOWN)
    return dashboard.render_page(
        request, "workflows.html", active="Workflows", workflows=found, statuses=params.STATUSES
    )


async def workflow(request: Request) -> Response:
    """One workflow: its graph, each node in its state, and its jobs."""
    data = await workflow_data(request, request.path_params["workflow_id"])
    live = f"/live/workflows/{data['workflow'].id}"
    return dashboard_of(request).render_page(
        request, "workflow.html", active="Workflows", live_url=live, **data
    )


async def workflow_data(request: Request, workflow_id: int) -> dict[str, Any]:
    """What a workflow's page shows."""
    try:
        found = await dashboard_of(request).app.get_workflow(_known(workflow_id, "workflow"))
    except WorkflowNotFoundError:
        raise HTTPException(404, f"no workflow {workflow_id}") from None
    drawn = len(found.nodes) <= MAX_DRAWN
    base = request.scope.get("root_path", "").rstrip("/")
    return {
        "workflow": found,
        "graph": graph_svg(found.nodes, base) if drawn else None,
        "max_drawn": MAX_DRAWN,
    }
