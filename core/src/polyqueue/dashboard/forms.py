"""The dashboard's forms: `application/x-www-form-urlencoded` bodies (what its HTML forms
send), parsed without a multipart library; read once per request."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["Form", "read_form"]

Form = ImmutableMultiDict[str, str]
MAX_BODY = 1 << 20
URLENCODED = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> Form:
    """The request's form fields; 415 for another content type, 413 past `MAX_BODY`."""
    cached: Form | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await request.body()
    if body and kind != URLENCODED:
        raise HTTPException(415, f"expected a form ({URLENCODED}), got {kind or 'no type'}")
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"the form is larger than {MAX_BODY} bytes")
    try:
        fields = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20_000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"the form cannot be read: {exc}") from None
    form = ImmutableMultiDict(fields)
    request.state.form = form
    return form
