"""`redact_url`: a URL without its password, fit for messages and logs.

The one redactor of Polyqueue and its plugins: the database URL in `cannot connect to ...`,
the Redis URL in `cannot reach Redis at ...`, and every URL a settings error shows.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["SECRET_QUERY_WORDS", "redact_url"]

SECRET_QUERY_WORDS = ("password", "passwd", "pwd", "secret", "token", "key", "signature")
"""A query parameter whose name holds one of these (any case) is left out by `redact_url`:
libpq and redis-py read `?password=...` as the password."""


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs.

    `scheme://user:password@host/path?password=x&sslmode=require` is shown as
    `scheme://user@host/path?sslmode=require`: the password of the user information and every
    query parameter named like a secret (`SECRET_QUERY_WORDS`) are left out, the rest stays
    as written (hosts, IPv6 brackets, ports, path). It never raises, not even on a URL that
    does not parse, and it errs on hiding too much: the user information ends at the last
    `@`, so a password holding an unencoded `/`, `?` or `#` is still hidden.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        rest = f"{user}@{location}" if user else location
    where, question, query = rest.partition("?")
    if question:
        kept = [pair for pair in query.split("&") if not _secret(pair.partition("=")[0])]
        rest = f"{where}?{'&'.join(kept)}" if kept else where
    return f"{scheme}{separator}{rest}"


def _secret(name: str) -> bool:
    name = unquote(name).lower()
    return any(word in name for word in SECRET_QUERY_WORDS)
