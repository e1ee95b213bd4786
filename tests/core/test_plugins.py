"""The plugin manager: built-ins through the hook, duplicates, and async hookimpls refused."""

from __future__ import annotations

from typing import ClassVar

import pytest

from polyqueue import ConfigurationError, Polyqueue, hookimpl
from polyqueue.brokers.in_process import InProcessBroker
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.plugins import broker_classes, create_plugin_manager


def test_built_in_brokers_register_through_the_hook() -> None:
    classes = broker_classes(create_plugin_manager())
    assert classes["postgres"] is PostgresBroker
    assert classes["none"] is InProcessBroker


def test_a_plugin_broker_is_selected_by_name() -> None:
    class FakeBroker(InProcessBroker):
        name: ClassVar[str] = "fake"

    class Plugin:
        @hookimpl
        def polyqueue_register_brokers(self) -> list[type[InProcessBroker]]:
            return [FakeBroker]

    app = Polyqueue(
        database_url="postgresql://localhost/x", queue_backend="fake", plugins=[Plugin()]
    )
    assert app.broker_class is FakeBroker


def test_two_brokers_with_one_name_are_refused() -> None:
    class Impostor(InProcessBroker):
        name: ClassVar[str] = "postgres"

    class Plugin:
        @hookimpl
        def polyqueue_register_brokers(self) -> list[type[InProcessBroker]]:
            return [Impostor]

    with pytest.raises(ConfigurationError, match="two plugins register a broker named 'postgres'"):
        broker_classes(create_plugin_manager(Plugin()))


def test_an_async_hookimpl_is_refused() -> None:
    class Plugin:
        @hookimpl
        async def polyqueue_register_brokers(self) -> list[type[InProcessBroker]]:
            return []

    with pytest.raises(ConfigurationError, match="async def"):
        create_plugin_manager(Plugin())
