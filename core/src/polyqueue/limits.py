"""Flow-control limits: how many jobs may run at once and start per window, declared per
handler (`@app.register(concurrency_limit=..., rate_limit=..., concurrency_key=...)`) or per
queue (`app.configure_queue`), and parsed from `"100/m"`-style rates."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "MAX_KEY_LENGTH",
    "ConcurrencyKey",
    "Limits",
    "Rate",
    "check_key_field",
    "key_function",
    "parse_rate",
]

MAX_KEY_LENGTH = 200
"""Longest concurrency key stored; a longer one is refused at enqueue."""

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(?P<count>\d+)\s*/\s*(?P<span>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$")

ConcurrencyKey = str | Callable[[Any], Any]
"""A payload field name, or a function of the payload, giving the key a limit applies to."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` starts in any window of `window` seconds."""

    count: int
    window: float

    def __str__(self) -> str:
        return f"{self.count}/{self.window:g}s"


def parse_rate(text: str | Rate, *, what: str = "rate_limit") -> Rate:
    """`"100/m"`, `"5/s"`, `"1000/h"`, `"10/30s"` (10 per 30 seconds) or a `Rate`."""
    if isinstance(text, Rate):
        rate = text
    else:
        match = _RATE.match(text.lower()) if isinstance(text, str) else None
        if match is None or match["unit"] not in _UNITS:
            raise ConfigurationError(
                f"{what} must look like '100/m' (a count per s, m, h or d, or '10/30s'), "
                f"not {text!r}"
            )
        span = float(match["span"]) if match["span"] else 1.0
        rate = Rate(int(match["count"]), span * _UNITS[match["unit"]])
    if rate.count < 1 or not math.isfinite(rate.window) or rate.window <= 0:
        raise ConfigurationError(f"{what}: count and window must be positive, not {rate}")
    return rate


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of a handler or a queue: None means no limit of that kind."""

    concurrency: int | None = None
    rate: Rate | None = None
    per_key: bool = False

    @classmethod
    def build(
        cls,
        concurrency_limit: int | None,
        rate_limit: str | Rate | None,
        *,
        per_key: bool = False,
        what: str,
    ) -> Limits | None:
        """Validated limits, or None when neither is set."""
        if concurrency_limit is not None and (
            isinstance(concurrency_limit, bool)
            or not isinstance(concurrency_limit, int)
            or concurrency_limit < 1
        ):
            raise ConfigurationError(
                f"{what}: concurrency_limit must be a positive integer, not {concurrency_limit!r}"
            )
        rate = None if rate_limit is None else parse_rate(rate_limit, what=f"{what}: rate_limit")
        if concurrency_limit is None and rate is None:
            if per_key:
                raise ConfigurationError(
                    f"{what}: concurrency_key needs a concurrency_limit or a rate_limit"
                )
            return None
        return cls(concurrency_limit, rate, per_key)

    def columns(self) -> tuple[bool, int | None, int | None, float | None]:
        """The parameters of `flow_limit_set` after scope and name."""
        return (
            self.per_key,
            self.concurrency,
            None if self.rate is None else self.rate.count,
            None if self.rate is None else self.rate.window,
        )

    def describe(self) -> str:
        """`3 at once, 100/60s, per key`."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} at once")
        if self.rate is not None:
            parts.append(str(self.rate))
        if self.per_key:
            parts.append("per key")
        return ", ".join(parts)


def key_function(key: ConcurrencyKey, handler: str) -> Callable[[BaseModel], str]:
    """The function giving a validated payload's concurrency key as text."""
    if isinstance(key, str):
        field = key

        def read(payload: BaseModel) -> Any:
            return getattr(payload, field)

        getter: Callable[[Any], Any] = read
    elif callable(key):
        getter = key
    else:
        raise ConfigurationError(
            f"handler {handler!r}: concurrency_key must be a payload field name or a function"
            f" of the payload, not {key!r}"
        )

    def compute(payload: BaseModel) -> str:
        value = getter(payload)
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_KEY_LENGTH:
            raise ValueError(f"concurrency key longer than {MAX_KEY_LENGTH} characters")
        return text

    return compute


def check_key_field(key: ConcurrencyKey, model: type[BaseModel], handler: str) -> None:
    """A field-name key must name a field of the handler's payload model."""
    if isinstance(key, str) and key not in model.model_fields:
        raise ConfigurationError(
            f"handler {handler!r}: concurrency_key {key!r} is not a field of"
            f" {model.__name__} (fields: {', '.join(model.model_fields)})"
        )
