"""The plugin manager: built-ins and entry-point plugins, and the registries built from them."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import pluggy

from polyqueue import hookspecs
from polyqueue.exceptions import ConfigurationError, UnknownPluginError
from polyqueue.sql import CORE_LINE, MigrationLine

if TYPE_CHECKING:
    from polyqueue.broker import Broker
    from polyqueue.serializers import Serializer

__all__ = [
    "ENTRY_POINT_GROUP",
    "broker_classes",
    "check_hookimpls",
    "check_plugin",
    "create_plugin_manager",
    "emit",
    "migration_lines",
    "select_broker",
    "select_serializer",
    "serializer_classes",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "polyqueue"
DEFAULT_PLUGINS = ("polyqueue.builtins",)
KNOWN_BROKER_EXTRAS = {"redis": "redis", "sqs": "sqs", "azure": "azure", "pgmq": "pgmq"}
"""Brokers of the project's own plugin distributions, by name: the extra that installs each."""


def create_plugin_manager(*extra: object) -> pluggy.PluginManager:
    """A manager with the hookspecs, the built-ins, entry-point plugins and `extra` objects."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        manager.register(__import__(module_name, fromlist=["_"]), name=module_name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        check_plugin(manager, plugin)
        manager.register(plugin)
    check_hookimpls(manager)
    return manager


def check_hookimpls(manager: pluggy.PluginManager) -> None:
    """Refuse `async def` hookimpls and hookimpls of unknown hooks."""
    _reject_coroutine_hookimpls(manager)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"invalid plugin {exc.plugin!r}: {exc}") from exc


def check_plugin(manager: pluggy.PluginManager, plugin: object) -> None:
    """Refuse a plugin with an `async def` hookimpl before it is registered (a historic hook
    would otherwise be called at once and its coroutine never awaited)."""
    for name in dir(plugin):
        if manager.parse_hookimpl_opts(plugin, name) is None:
            continue
        if inspect.iscoroutinefunction(getattr(plugin, name)):
            raise ConfigurationError(
                f"plugin {plugin!r} implements {name} with `async def`; hooks are plain "
                "functions (return objects that do async work instead)"
            )


def _reject_coroutine_hookimpls(manager: pluggy.PluginManager) -> None:
    for hook_name in dir(manager.hook):
        caller = getattr(manager.hook, hook_name)
        if not hook_name.startswith("polyqueue_") or not hasattr(caller, "get_hookimpls"):
            continue
        for impl in caller.get_hookimpls():
            if inspect.iscoroutinefunction(impl.function):
                raise ConfigurationError(
                    f"plugin {impl.plugin_name!r} implements {hook_name} with `async def`; "
                    "hooks are plain functions (return objects that do async work instead)"
                )


def _by_name(kind: str, results: list[list[Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for classes in results:
        for cls in classes:
            if cls.name in found and found[cls.name] is not cls:
                raise ConfigurationError(
                    f"two plugins register a {kind} named {cls.name!r}: "
                    f"{found[cls.name].__module__} and {cls.__module__}"
                )
            found[cls.name] = cls
    return found


def broker_classes(manager: pluggy.PluginManager) -> dict[str, type[Broker]]:
    """Every registered broker class by name; a name registered twice is an error."""
    return _by_name("broker", manager.hook.polyqueue_register_brokers())


def serializer_classes(manager: pluggy.PluginManager) -> dict[str, type[Serializer]]:
    """Every registered serializer class by name; a name registered twice is an error."""
    return _by_name("serializer", manager.hook.polyqueue_register_serializers())


def select_broker(manager: pluggy.PluginManager, name: str) -> type[Broker]:
    """The broker class registered as `name`; `UnknownPluginError` listing the others."""
    classes = broker_classes(manager)
    if name not in classes:
        extra = KNOWN_BROKER_EXTRAS.get(name)
        hint = (
            f"it ships as the polyqueue-{extra} distribution: `pip install 'polyqueue[{extra}]'`"
            if extra
            else ""
        )
        raise UnknownPluginError("broker (POLYQUEUE_QUEUE_BACKEND)", name, list(classes), hint)
    return classes[name]


def select_serializer(manager: pluggy.PluginManager, name: str) -> Serializer:
    """A serializer of the class registered as `name`; `UnknownPluginError` otherwise."""
    classes = serializer_classes(manager)
    if name not in classes:
        raise UnknownPluginError("serializer (POLYQUEUE_SERIALIZER)", name, list(classes))
    return classes[name]()


def migration_lines(manager: pluggy.PluginManager) -> list[MigrationLine]:
    """Plugin migration lines, in registration order; a duplicate name is an error."""
    lines = [line for result in manager.hook.polyqueue_register_migrations() for line in result]
    names = [line.name for line in lines]
    if len(set(names)) != len(names) or CORE_LINE.name in names:
        raise ConfigurationError(f"migration line names must be unique, got {names}")
    return lines


def emit(manager: pluggy.PluginManager, hook_name: str, event: object) -> None:
    """Call every implementation of a metrics hook with `event`; one that raises is logged
    and skipped, so a broken metrics plugin never breaks a job."""
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        try:
            impl.function(event=event)
        except Exception:
            owner = type(impl.plugin).__qualname__
            log.warning("metrics hook %s of %s failed", hook_name, owner, exc_info=True)
