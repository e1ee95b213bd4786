"""`Registry`: an app's handlers and cron schedules, by name and by function."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from polyqueue.cron import CronSchedule, CronTick, Misfire
from polyqueue.exceptions import ConfigurationError, HandlerNotFoundError
from polyqueue.handlers import Handler, build_handler
from polyqueue.limits import ConcurrencyKey, Limits, check_key_field, key_function

if TYPE_CHECKING:
    from pydantic import BaseModel

    from polyqueue.handlers import RetryBackoff
    from polyqueue.settings import PolyqueueSettings, TimeoutStrategy

__all__ = ["HandlerRef", "Registry"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
HandlerRef = str | Callable[..., Any]
"""A handler given by its registered name or by its function."""


def _given(value: T | None, default: T) -> T:
    """`value` unless it is None (0 is a value: `build_handler` refuses it, not replaces it)."""
    return default if value is None else value


class Registry:
    """Handlers by name (`handlers`), cron schedules by name (`cron_schedules`), and the
    name each registered function goes by."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.cron_schedules: dict[str, CronSchedule] = {}
        self._names: dict[Callable[..., Any], str] = {}
        self.limits: dict[str, Limits] = {}
        """Flow-control limits by handler name (handlers without limits are absent)."""
        self.key_functions: dict[str, Callable[[BaseModel], str]] = {}
        """How each handler with a `concurrency_key` computes a payload's key."""

    def register(
        self,
        function: F,
        settings: PolyqueueSettings,
        *,
        name: str | None,
        queue: str | None,
        max_attempts: int | None,
        max_run_seconds: float | None,
        timeout_strategy: TimeoutStrategy | None,
        retry_backoff: RetryBackoff | None = None,
        limits: Limits | None = None,
        concurrency_key: ConcurrencyKey | None = None,
    ) -> F:
        """Register `function` as a handler; unset options come from `settings` (an unset
        `retry_backoff` means the app-wide `retry_backoff_base`/`retry_backoff_max`).
        `limits` apply across every worker, per `concurrency_key` when one is given."""
        handler_name = name or f"{function.__module__}.{function.__qualname__}"
        if handler_name in self.handlers:
            raise ConfigurationError(f"a handler is already registered as {handler_name!r}")
        handler = build_handler(
            function,
            name=handler_name,
            queue=queue or settings.default_queue,
            max_attempts=_given(max_attempts, settings.default_max_attempts),
            max_run_seconds=_given(max_run_seconds, settings.default_max_run_seconds),
            timeout_strategy=timeout_strategy or settings.default_timeout_strategy,
            retry_backoff=retry_backoff,
        )
        if concurrency_key is not None:
            check_key_field(concurrency_key, handler.payload_model, handler_name)
            self.key_functions[handler_name] = key_function(concurrency_key, handler_name)
        if limits is not None:
            self.limits[handler_name] = limits
        self.handlers[handler_name] = handler
        self._names[function] = handler_name
        return function

    def register_cron(
        self,
        function: F,
        settings: PolyqueueSettings,
        expression: str,
        *,
        name: str | None,
        misfire: Misfire,
        queue: str | None,
        max_attempts: int | None,
        max_run_seconds: float | None,
    ) -> F:
        """Register `function` as the handler of a cron schedule firing on `expression`."""
        schedule_name = name or f"{function.__module__}.{function.__qualname__}"
        if schedule_name in self.cron_schedules:
            raise ConfigurationError(f"a cron schedule is already named {schedule_name!r}")
        schedule = CronSchedule(schedule_name, expression, schedule_name, misfire)
        self.register(
            function,
            settings,
            name=schedule_name,
            queue=queue,
            max_attempts=max_attempts,
            max_run_seconds=max_run_seconds,
            timeout_strategy=None,
        )
        if self.handlers[schedule_name].payload_model is not CronTick:
            del self.handlers[schedule_name]
            self._names.pop(function, None)
            raise ConfigurationError(
                f"cron handler {schedule_name!r} must take `tick: CronTick` as its payload"
            )
        self.cron_schedules[schedule_name] = schedule
        return function

    def name_of(self, ref: HandlerRef) -> str:
        """The registered name of a handler given by name or by function."""
        if isinstance(ref, str):
            return ref
        if ref in self._names:
            return self._names[ref]
        raise HandlerNotFoundError(getattr(ref, "__qualname__", repr(ref)), list(self.handlers))
