"""The hooks Polyqueue calls, for plugins to implement. Every hook is a plain `def`.

Async behaviour lives in the objects hooks return (brokers, middleware), never in the hooks:
pluggy does not await, so an `async def` hookimpl would hand back an un-awaited coroutine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from polyqueue.broker import Broker

__all__ = ["hookimpl", "hookspec"]

PROJECT = "polyqueue"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# -- registration ---------------------------------------------------------------------------


@hookspec
def polyqueue_register_brokers() -> list[type[Broker]]:  # type: ignore[empty-body]
    """Return the broker classes this plugin provides.

    Called once, when the app resolves `queue_backend`. Each class carries its `name`
    (`"redis"`, `"sqs"`...), which users select with `POLYQUEUE_QUEUE_BACKEND`. The built-in
    `postgres` and `none` brokers are registered through this same hook.

    :return: a list of `polyqueue.Broker` subclasses; two plugins offering the same name is
        a `ConfigurationError`.
    """
