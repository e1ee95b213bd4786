"""Token auth for browsers: a login form that sets a signed, HttpOnly cookie, and logout."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.responses import RedirectResponse

from polyqueue.dashboard.forms import read_form
from polyqueue.dashboard.security import AUTH_COOKIE, TokenAuth, token_id
from polyqueue.dashboard.state import cookie_path, dashboard_of

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["login_form", "login_submit", "logout"]


async def login_form(request: Request) -> Response:
    """The login form (token auth); with other auth, back to the overview."""
    dashboard = dashboard_of(request)
    if not isinstance(dashboard.auth, TokenAuth):
        return _home(request)
    return dashboard.render_page(request, "login.html", active="", failed=False)


async def login_submit(request: Request) -> Response:
    """Check the token (the CSRF token was checked by the guard); set the cookie."""
    dashboard = dashboard_of(request)
    auth = dashboard.auth
    if not isinstance(auth, TokenAuth):
        return _home(request)
    token = str((await read_form(request)).get("token", ""))
    if not hmac.compare_digest(token.encode(), auth.token.encode()):
        return dashboard.render_page(request, "login.html", status_code=401, active="", failed=True)
    response = _home(request)
    response.set_cookie(
        AUTH_COOKIE,
        dashboard.signer.sign("login", token_id(auth)),
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    """Forget the login cookie."""
    response = RedirectResponse(_root(request) + "/login", status_code=303)
    response.delete_cookie(AUTH_COOKIE, path=cookie_path(request))
    return response


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _home(request: Request) -> RedirectResponse:
    return RedirectResponse(_root(request) + "/", status_code=303)
