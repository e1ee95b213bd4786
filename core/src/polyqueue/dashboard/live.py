"""Live updates: JSON of the page's changing pieces (`{"fragments": {element id: html}}`),
polled by `static/dashboard.js`, which swaps them in place without a reload."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from polyqueue.dashboard import pages, params
from polyqueue.dashboard.state import dashboard_of

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "live_job",
    "live_jobs",
    "live_overview",
    "live_queues",
    "live_workers",
    "live_workflow",
]

MAX_LIVE_IDS = 200


async def live_overview(request: Request) -> JSONResponse:
    """The overview's totals, chart, counts table and running jobs."""
    dashboard = dashboard_of(request)
    data = await pages.overview_data(dashboard)
    fragments = {
        "workers-alive": str(data["workers_alive"]),
        "chart": str(data["chart"]),
        "counts": dashboard.render_fragment(request, "_counts.html", **data),
        "running": dashboard.render_fragment(request, "_running.html", **data),
    }
    fragments.update({f"total-{s}": str(n) for s, n in data["totals"].items()})
    return JSONResponse({"fragments": fragments})


async def live_jobs(request: Request) -> JSONResponse:
    """The state cell of each job `id` the jobs page shows."""
    dashboard = dashboard_of(request)
    ids = params.parse_ids(request.query_params.getlist("id"))
    if len(ids) > MAX_LIVE_IDS:
        raise params.bad(f"id: at most {MAX_LIVE_IDS} ids, got {len(ids)}")
    rows = await dashboard.queries.job_live(ids)
    return JSONResponse(
        {
            "fragments": {
                f"job-{row['id']}": dashboard.render_fragment(request, "_job_cell.html", job=row)
                for row in rows
            }
        }
    )


async def live_job(request: Request) -> JSONResponse:
    """A job page's state, attempts, timeline, error and result."""
    dashboard = dashboard_of(request)
    data = await pages.job_data(dashboard, request.path_params["job_id"])
    html = dashboard.render_fragment(request, "_job_detail.html", **data)
    return JSONResponse({"fragments": {"job-detail": html}})


async def live_workers(request: Request) -> JSONResponse:
    """The workers table."""
    dashboard = dashboard_of(request)
    data = await pages.workers_data(dashboard)
    html = dashboard.render_fragment(request, "_workers.html", **data)
    return JSONResponse({"fragments": {"workers": html}})


async def live_queues(request: Request) -> JSONResponse:
    """The queues table."""
    dashboard = dashboard_of(request)
    data = await pages.queues_data(dashboard)
    html = dashboard.render_fragment(request, "_queues.html", **data)
    return JSONResponse({"fragments": {"queues": html}})


async def live_workflow(request: Request) -> JSONResponse:
    """A workflow's graph and jobs."""
    dashboard = dashboard_of(request)
    data = await pages.workflow_data(request, request.path_params["workflow_id"])
    html = dashboard.render_fragment(request, "_workflow.html", **data)
    return JSONResponse({"fragments": {"workflow": html}})
