"""`Dashboard`: what every request of the dashboard shares (the app, auth, templates)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import jinja2
from starlette.responses import HTMLResponse

from polyqueue.dashboard.queries import DashboardQueries
from polyqueue.dashboard.security import TokenAuth

if TYPE_CHECKING:
    from starlette.requests import Request

    from polyqueue.app import Polyqueue
    from polyqueue.dashboard.security import Auth, Signer

__all__ = ["FLASH_COOKIE", "Dashboard", "cookie_path", "dashboard_of"]

FLASH_COOKIE = "polyqueue_flash"


class Dashboard:
    """The Polyqueue app a dashboard shows, its auth, mode, signer and templates."""

    def __init__(self, app: Polyqueue, *, read_only: bool, auth: Auth, signer: Signer) -> None:
        self.app = app
        self.read_only = read_only
        self.auth = auth
        self.signer = signer
        self._queries: DashboardQueries | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("polyqueue.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(age=format_age, when=format_when, pretty=pretty_json)

    @property
    def queries(self) -> DashboardQueries:
        """The dashboard's queries on the started app's store."""
        store = self.app.store
        if self._queries is None or self._queries.store is not store:
            self._queries = DashboardQueries(store)
        return self._queries

    def csrf_token(self, request: Request) -> str:
        """The token this browser's forms carry (see `security`)."""
        return self.signer.sign("csrf", request.state.csrf_nonce)

    def context(self, request: Request, **values: Any) -> dict[str, Any]:
        """What every template sees, plus `values`."""
        return {
            "base": request.scope.get("root_path", "").rstrip("/"),
            "read_only": self.read_only,
            "csrf_token": self.csrf_token(request),
            "logout": isinstance(self.auth, TokenAuth),
            "flash": unquote(request.cookies.get(FLASH_COOKIE, "")),
            "now": datetime.now(UTC),
            **values,
        }

    def render_page(
        self, request: Request, template: str, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        """`template` rendered for `request`, as a page (the flash message is shown once)."""
        html = self.templates.get_template(template).render(self.context(request, **values))
        response = HTMLResponse(html, status_code=status_code)
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=cookie_path(request))
        return response

    def render_fragment(self, request: Request, template: str, **values: Any) -> str:
        """A template (a piece of a page) as HTML, for live updates."""
        return self.templates.get_template(template).render(self.context(request, **values))


def dashboard_of(request: Request) -> Dashboard:
    """The `Dashboard` of the app serving `request`."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def cookie_path(request: Request) -> str:
    """The path the dashboard's cookies are scoped to (its mount point)."""
    return str(request.scope.get("root_path", "")).rstrip("/") or "/"


def format_age(seconds: float | None) -> str:
    """`42s`, `5m 3s`, `2h 10m`, `3d 4h`; `-` for None."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if total >= size:
            rest = total % size // sub_size
            return f"{total // size}{unit}" + (f" {rest}{sub}" if rest else "")
    if total >= 60:  # noqa: PLR2004
        return f"{total // 60}m" + (f" {total % 60}s" if total % 60 else "")
    return f"{total}s"


def format_when(moment: datetime | None) -> str:
    """A time as `2026-01-31 12:00:03` UTC; `-` for None."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
