"""The plugin manager: built-ins and entry-point plugins, and the registries built from them."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pluggy

from polyqueue import hookspecs
from polyqueue.exceptions import ConfigurationError, UnknownPluginError

if TYPE_CHECKING:
    from polyqueue.broker import Broker

__all__ = [
    "ENTRY_POINT_GROUP",
    "broker_classes",
    "check_hookimpls",
    "create_plugin_manager",
    "select_broker",
]

ENTRY_POINT_GROUP = "polyqueue"
DEFAULT_PLUGINS = ("polyqueue.builtins",)


def create_plugin_manager(*extra: object) -> pluggy.PluginManager:
    """A manager with the hookspecs, the built-ins, entry-point plugins and `extra` objects."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        manager.register(__import__(module_name, fromlist=["_"]), name=module_name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        manager.register(plugin)
    check_hookimpls(manager)
    return manager


def check_hookimpls(manager: pluggy.PluginManager) -> None:
    """Refuse `async def` hookimpls and hookimpls of unknown hooks."""
    _reject_coroutine_hookimpls(manager)
    manager.check_pending()


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


def broker_classes(manager: pluggy.PluginManager) -> dict[str, type[Broker]]:
    """Every registered broker class by name; a name registered twice is an error."""
    found: dict[str, type[Broker]] = {}
    for classes in manager.hook.polyqueue_register_brokers():
        for cls in classes:
            if cls.name in found and found[cls.name] is not cls:
                raise ConfigurationError(
                    f"two plugins register a broker named {cls.name!r}: "
                    f"{found[cls.name].__module__} and {cls.__module__}"
                )
            found[cls.name] = cls
    return found


def select_broker(manager: pluggy.PluginManager, name: str) -> type[Broker]:
    """The broker class registered as `name`; `UnknownPluginError` listing the others."""
    classes = broker_classes(manager)
    if name not in classes:
        raise UnknownPluginError("broker (POLYQUEUE_QUEUE_BACKEND)", name, list(classes))
    return classes[name]
