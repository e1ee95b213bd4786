"""Query and form parameters of the dashboard, checked: a bad one is a 400 naming it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException

from polyqueue.dashboard.queries import JobFilters
from polyqueue.status import JobStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MAX_ID", "STATUSES", "job_filters", "optional_id", "page_size", "parse_ids"]

STATUSES = tuple(status.value for status in JobStatus)
MAX_ID = 2**63 - 1
MAX_TEXT = 500
PAGE_SIZES = (20, 50, 100, 200)
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FILTER_KEYS = ("status", "queue", "handler", "since", "until", "q")
"""The query parameters that make up a filter (`job_filters`)."""


def bad(message: str) -> HTTPException:
    """A 400 with `message`, which names the parameter and what it takes."""
    return HTTPException(400, message)


def text(params: Mapping[str, str], key: str) -> str | None:
    """The parameter `key` stripped, None when absent or empty; refused when unusable."""
    value = params.get(key, "").strip()
    if not value:
        return None
    if len(value) > MAX_TEXT:
        raise bad(f"{key}: at most {MAX_TEXT} characters, got {len(value)}")
    if "\x00" in value:
        raise bad(f"{key}: must not contain a NUL character")
    return value


def optional_id(params: Mapping[str, str], key: str) -> int | None:
    """A job id parameter (`before`, `after`), None when absent."""
    value = text(params, key)
    if value is None:
        return None
    return job_id(value, key)


def job_id(value: str, what: str) -> int:
    """`value` as a job id (a positive 64-bit integer)."""
    if not value.isdecimal() or not 1 <= int(value) <= MAX_ID:
        raise bad(f"{what}: expected a job id (a positive integer), got {value[:40]!r}")
    return int(value)


def parse_ids(values: list[str]) -> list[int]:
    """Job ids from a form's `id` fields."""
    return [job_id(value, "id") for value in values]


def page_size(params: Mapping[str, str]) -> int:
    """The `limit` parameter: one of `PAGE_SIZES`, 50 by default."""
    value = text(params, "limit")
    if value is None:
        return 50
    if not value.isdecimal() or int(value) not in PAGE_SIZES:
        sizes = ", ".join(map(str, PAGE_SIZES))
        raise bad(f"limit: expected one of {sizes}, got {value[:40]!r}")
    return int(value)


def moment(params: Mapping[str, str], key: str) -> datetime | None:
    """A time parameter: a duration back from now (`30m`, `2h`, `7d`) or an ISO 8601 time
    (UTC unless it has an offset; what a `datetime-local` input sends)."""
    value = text(params, key)
    if value is None:
        return None
    match = _DURATION.match(value)
    if match:
        try:
            return datetime.now(UTC) - timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
        except OverflowError:
            raise bad(f"{key}: {value} goes back before the year 1") from None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise bad(
            f"{key}: expected a duration like 30m, 2h or 7d, or a time like "
            f"2026-01-31T12:00; got {value[:40]!r}"
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def job_filters(params: Mapping[str, str], statuses: list[str]) -> JobFilters:
    """The jobs page's filters from its query (or a bulk form); `statuses` are the repeated
    `status` values."""
    chosen = tuple(dict.fromkeys(s for s in statuses if s))
    for status in chosen:
        if status not in STATUSES:
            raise bad(f"status: expected one of {', '.join(STATUSES)}; got {status[:40]!r}")
    since, until = moment(params, "since"), moment(params, "until")
    if since and until and since >= until:
        raise bad("since: must be before until")
    return JobFilters(
        statuses=chosen,
        queue=text(params, "queue"),
        name=text(params, "handler"),
        since=since,
        until=until,
        text=text(params, "q"),
    )
