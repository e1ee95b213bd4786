"""`create_app`: the dashboard as an ASGI app (Starlette), standalone or mounted.

Every request passes `guard`: auth first (401, or the login page for a browser with token
auth), then, for a POST, read-only mode (403) and the CSRF token (403). Errors render as a
page (or JSON for `/live/...`) with their status and what was wrong: a bad parameter is a
400 naming it, never a 500.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from polyqueue.dashboard import actions, live, pages
from polyqueue.dashboard.forms import read_form
from polyqueue.dashboard.login import login_form, login_submit, logout
from polyqueue.dashboard.security import CSRF_COOKIE, Signer, TokenAuth, authenticated
from polyqueue.dashboard.state import Dashboard, cookie_path, dashboard_of
from polyqueue.exceptions import PolyqueueError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.middleware.base import RequestResponseEndpoint
    from starlette.requests import Request

    from polyqueue.app import Polyqueue
    from polyqueue.dashboard.security import Auth

__all__ = ["create_app"]

_PUBLIC = ("/static/", "/login")
"""Paths served without auth: the stylesheet and script, and the login form."""


def create_app(
    app: Polyqueue,
    *,
    read_only: bool = False,
    auth: Auth = None,
    secret: bytes | None = None,
) -> Starlette:
    """The dashboard of `app`, as an ASGI app.

    Run alone (`polyqueue dashboard`, or any ASGI server), it starts `app` if it is not
    started and closes what it started. Mounted in a FastAPI or Starlette app, the host's
    lifespan starts `app` (as it does to enqueue). `auth` is a `TokenAuth`, a `BasicAuth` or
    None; `read_only` refuses every write with 403. `secret` signs CSRF tokens and the login
    cookie (default: random per process, so a restart asks to log in again).
    """
    dashboard = Dashboard(app, read_only=read_only, auth=auth, signer=Signer(secret))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        started_here = not app.started
        if started_here:
            await app.start()
        try:
            yield
        finally:
            if started_here:
                await app.close()

    site = Starlette(
        routes=_routes(),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)],
        exception_handlers={
            HTTPException: _http_error,
            PolyqueueError: _polyqueue_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    site.state.dashboard = dashboard
    return site


def _routes() -> list[Route | Mount]:
    return [
        Route("/", pages.overview),
        Route("/jobs", pages.jobs),
        Route("/jobs/action", actions.jobs_action, methods=["POST"]),
        Route("/jobs/{job_id:int}", pages.job),
        Route("/jobs/{job_id:int}/action", actions.job_action, methods=["POST"]),
        Route("/workers", pages.workers),
        Route("/queues", pages.queues),
        Route("/queues/action", actions.queue_action, methods=["POST"]),
        Route("/cron", pages.cron),
        Route("/workflows", pages.workflows),
        Route("/workflows/{workflow_id:int}", pages.workflow),
        Route("/live/overview", live.live_overview),
        Route("/live/jobs", live.live_jobs),
        Route("/live/jobs/{job_id:int}", live.live_job),
        Route("/live/workers", live.live_workers),
        Route("/live/queues", live.live_queues),
        Route("/live/workflows/{workflow_id:int}", live.live_workflow),
        Route("/login", login_form),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("polyqueue.dashboard", "static")])),
    ]


async def guard(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Auth, then for writes read-only mode and CSRF; sets the CSRF cookie when missing."""
    dashboard = dashboard_of(request)
    path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/"))
    nonce = request.cookies.get(CSRF_COOKIE)
    request.state.csrf_nonce = nonce or dashboard.signer.nonce()
    if not path.startswith(_PUBLIC) and not authenticated(
        request, dashboard.auth, dashboard.signer
    ):
        response = _unauthenticated(request, dashboard, path)
    elif request.method == "POST" and (refusal := await _refuse_write(request, dashboard, path)):
        response = refusal
    else:
        response = await call_next(request)
    if nonce is None:
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_nonce,
            path=cookie_path(request),
            httponly=True,
            samesite="strict",
        )
    return response


def _unauthenticated(request: Request, dashboard: Dashboard, path: str) -> Response:
    if isinstance(dashboard.auth, TokenAuth):
        if request.method == "GET" and not path.startswith("/live/"):
            root = request.scope.get("root_path", "").rstrip("/")
            return RedirectResponse(f"{root}/login", status_code=303)
        return _error(request, 401, "log in first: send Authorization: Bearer <token>")
    response = _error(request, 401, "this dashboard needs a user name and password")
    response.headers["WWW-Authenticate"] = 'Basic realm="Polyqueue dashboard", charset="UTF-8"'
    return response


async def _refuse_write(request: Request, dashboard: Dashboard, path: str) -> Response | None:
    """403 for a write in read-only mode or without the form's CSRF token; None to go on."""
    if dashboard.read_only and path not in {"/login", "/logout"}:
        return _error(request, 403, "this dashboard is read-only: it changes nothing")
    try:
        form = await read_form(request)
    except HTTPException as exc:  # raised here, outside the routes' exception handlers
        return _error(request, exc.status_code, str(exc.detail))
    token = str(form.get("csrf", ""))
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if not nonce or not token or not dashboard.signer.verify("csrf", nonce, token):
        return _error(
            request,
            403,
            "the form's CSRF token is missing or does not match this browser's: "
            "reload the page and try again",
        )
    return None


def _error(request: Request, status_code: int, detail: str) -> Response:
    """An error as a page, or as JSON for the live endpoints and scripts."""
    path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/"))
    wants_json = path.startswith("/live/") or "text/html" not in request.headers.get("accept", "")
    if wants_json:
        return JSONResponse({"error": detail, "status": status_code}, status_code=status_code)
    from http import HTTPStatus  # noqa: PLC0415

    return dashboard_of(request).render_page(
        request,
        "error.html",
        status_code=status_code,
        active="",
        code=status_code,
        reason=HTTPStatus(status_code).phrase,
        detail=detail,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 -- registered for HTTPException
    return _error(request, exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(request, 500, f"the dashboard failed: {type(exc).__name__}")


async def _polyqueue_error(request: Request, exc: Exception) -> Response:
    """Polyqueue's own errors (the database is down, ...): 503, with what went wrong."""
    return _error(request, 503, f"Polyqueue could not answer: {exc}")
