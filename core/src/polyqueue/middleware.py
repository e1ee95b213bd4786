"""Middleware: async `(call_next, ctx)` callables around dispatch and enqueue, composed once."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pydantic import BaseModel

    from polyqueue.context import JobContext
    from polyqueue.producer import EnqueueOptions

__all__ = [
    "DispatchMiddleware",
    "EnqueueContext",
    "EnqueueMiddleware",
    "compose",
    "flatten",
]

C = TypeVar("C")
R = TypeVar("R")

Next = Callable[[C], Awaitable[R]]
Middleware = Callable[[Next[C, R], C], Awaitable[R]]

DispatchMiddleware = Callable[
    [Callable[["JobContext"], Awaitable[Any]], "JobContext"], Awaitable[Any]
]
"""`async def mw(call_next, ctx: JobContext) -> result`: wraps one handler call."""


@dataclass(slots=True)
class EnqueueContext:
    """What an enqueue middleware sees: the handler, the payloads and the options.

    Add to `options.headers` (through the `headers` property) to send data along with every
    job of the call, e.g. a trace context: workers see it in `JobContext.headers`.
    """

    name: str
    payloads: Sequence[BaseModel | Mapping[str, Any]]
    options: EnqueueOptions
    connection: Any = None
    """The caller's connection for a transactional enqueue, or None."""

    @property
    def headers(self) -> dict[str, str]:
        """The headers every job of this call carries."""
        return self.options.headers


EnqueueMiddleware = Callable[
    [Callable[[EnqueueContext], Awaitable[list[int]]], EnqueueContext], Awaitable[list[int]]
]
"""`async def mw(call_next, ctx: EnqueueContext) -> list[int]`: wraps one enqueue call."""


def flatten(results: Iterable[Any]) -> list[Any]:
    """Hook results (a middleware, a list of them, or None per plugin) as one flat list, in
    plugin registration order (pluggy returns the last registered plugin's result first)."""
    flat: list[Any] = []
    for result in reversed(list(results)):
        if result is None:
            continue
        flat.extend(result if isinstance(result, list) else [result])
    return flat


def compose(middlewares: Sequence[Middleware[C, R]], innermost: Next[C, R]) -> Next[C, R]:
    """One callable running `middlewares` in order (the first outermost) around `innermost`."""
    chain = innermost
    for middleware in reversed(middlewares):
        chain = functools.partial(_call, middleware, chain)
    return chain


async def _call(middleware: Middleware[C, R], call_next: Next[C, R], ctx: C) -> R:
    return await middleware(call_next, ctx)
