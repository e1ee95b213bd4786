"""The dashboard's writes (POST): job actions, one job, a selection or a filter, and pausing
queues. They go through the same code as the CLI (`control_jobs`, `pause_queue`), and answer
with a redirect back (303) and a one-time message."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.responses import RedirectResponse

from polyqueue.control import ACTIONS, Action, control_jobs
from polyqueue.dashboard import params
from polyqueue.dashboard.forms import read_form
from polyqueue.dashboard.pages import BULK_LIMIT
from polyqueue.dashboard.state import FLASH_COOKIE, cookie_path, dashboard_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

__all__ = ["job_action", "jobs_action", "queue_action"]

DONE = {"requeue": "requeued", "cancel": "cancelled", "fail": "failed"}
REASON = "failed from the dashboard"


def _action(form: Mapping[str, str]) -> Action:
    value = str(form.get("action", ""))
    for action in ACTIONS:
        if value == action:
            return action
    raise params.bad(f"action: expected one of {', '.join(ACTIONS)}; got {value[:40]!r}")


def _back(request: Request, path: str, message: str) -> RedirectResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    response = RedirectResponse(root + path, status_code=303)
    response.set_cookie(
        FLASH_COOKIE, quote(message), path=cookie_path(request), httponly=True, samesite="strict"
    )
    return response


def _summary(action: Action, matched: int, changed: list[int]) -> str:
    done = DONE[action]
    shown = ", ".join(f"#{job_id}" for job_id in changed[:10])
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""  # noqa: PLR2004
    left = matched - len(changed)
    tail = f"; {left} left as they were (not in a state to be {done})" if left else ""
    return f"{done} {len(changed)} of {matched} jobs" + (f": {shown}{more}" if shown else "") + tail


async def job_action(request: Request) -> RedirectResponse:
    """Retry (requeue), cancel or fail one job."""
    dashboard = dashboard_of(request)
    job_id: int = request.path_params["job_id"]
    action = _action(await read_form(request))
    changed = await control_jobs(dashboard.app.runtime, action, [job_id], REASON)
    message = (
        f"job #{job_id} {DONE[action]}"
        if changed
        else f"job #{job_id} was not {DONE[action]}: it is not in a state for it"
    )
    return _back(request, f"/jobs/{job_id}", message)


async def jobs_action(request: Request) -> RedirectResponse:
    """An action on the selected jobs (`id` fields) or, with `<action>-filter`, on the
    newest `BULK_LIMIT` jobs matching the filter fields."""
    dashboard = dashboard_of(request)
    form = await read_form(request)
    value = str(form.get("action", ""))
    on_filter = value.endswith("-filter")
    fields = {key: str(item) for key, item in form.multi_items() if key in params.FILTER_KEYS}
    statuses = [str(item) for item in form.getlist("status")]
    filters = params.job_filters(fields, statuses)
    action = _action({"action": value.removesuffix("-filter")})
    if on_filter:
        ids = await dashboard.queries.job_ids(filters, BULK_LIMIT)
    else:
        ids = params.parse_ids([str(item) for item in form.getlist("id")])
        if not ids:
            raise params.bad("id: select at least one job")
    changed = await control_jobs(dashboard.app.runtime, action, ids, REASON)
    back = [(key, str(item)) for key, item in form.multi_items() if key in params.FILTER_KEYS]
    query = urlencode([(k, v) for k, v in back if v])
    return _back(
        request, "/jobs" + (f"?{query}" if query else ""), _summary(action, len(ids), changed)
    )


async def queue_action(request: Request) -> RedirectResponse:
    """Pause or resume a queue (`queue`, `action` fields)."""
    dashboard = dashboard_of(request)
    form = await read_form(request)
    queue = params.text(form, "queue")
    if queue is None:
        raise params.bad("queue: name the queue")
    value = str(form.get("action", ""))
    if value == "pause":
        await dashboard.app.pause_queue(queue)
        message = f"queue {queue} paused: workers start none of its jobs until it is resumed"
    elif value == "resume":
        waiting = await dashboard.app.resume_queue(queue)
        message = f"queue {queue} resumed; {waiting} waiting jobs released"
    else:
        raise params.bad(f"action: expected pause or resume; got {value[:40]!r}")
    return _back(request, "/queues", message)
