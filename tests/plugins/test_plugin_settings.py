"""Every plugin builds its settings with the core's `load_settings_model`: a wrong value is named
by its variable, and no password, connection string or key is ever shown."""

from __future__ import annotations

import importlib
from typing import Any
from unittest.mock import Mock

import pytest

from polyqueue import redaction
from polyqueue.exceptions import ConfigurationError
from polyqueue.settings import load_settings_model

AZURE = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=hunter2"

PLUGINS = {  # plugin: (its settings class, what its messages call them, its secret fields)
    "redis": ("RedisBrokerSettings", "Redis broker settings", ("url",)),
    "sqs": ("SqsBrokerSettings", "SQS broker settings", ()),
    "azure": ("AzureBrokerSettings", "Azure Service Bus broker settings", ()),
    "pgmq": ("PgmqBrokerSettings", "PGMQ broker settings", ("database_url",)),
}


@pytest.mark.parametrize(
    ("plugin", "variable", "value", "problem"),
    [
        ("redis", "SOCKET_TIMEOUT", "-1", "Input should be greater than 0 (got '-1')"),
        ("redis", "URL", "http://me:hunter2@h:6379", "Value error, must be a redis://, rediss://"),
        ("sqs", "MAX_ATTEMPTS", "11", "Input should be less than or equal to 10 (got '11')"),
        ("sqs", "ENDPOINT_URL", "ftp://me:hunter2@h", "must be an http:// or https:// URL (got '"),
        ("azure", "RECEIVE_BATCH", "0", "Input should be greater than or equal to 1 (got '0')"),
        (
            "azure",
            "CONNECTION_STRING",
            AZURE.replace("Endpoint", "Endpnt"),
            "must contain Endpoint",
        ),
        ("pgmq", "QUEUE_PREFIX", "Bad-Prefix", "at most 30 characters (got 'Bad-Prefix')"),
        ("pgmq", "DATABASE_URL", "mysql://me:hunter2@db/x", "Value error, must be a postgresql://"),
    ],
)
def test_a_wrong_value_is_named_and_no_secret_is_shown(
    monkeypatch: pytest.MonkeyPatch, plugin: str, variable: str, value: str, problem: str
) -> None:
    module = importlib.import_module(f"polyqueue_{plugin}.settings")
    model, what, secret_fields = PLUGINS[plugin]
    monkeypatch.setenv("POLYQUEUE_AZURE_CONNECTION_STRING", AZURE)
    monkeypatch.setenv(f"POLYQUEUE_{plugin.upper()}_{variable}", value)
    spy = Mock(wraps=load_settings_model)
    monkeypatch.setattr(module, "load_settings_model", spy)
    with pytest.raises(ConfigurationError) as caught:
        getattr(module, f"load_{plugin}_settings")()
    message = str(caught.value)
    assert message.startswith(f"invalid {what}: POLYQUEUE_{plugin.upper()}_{variable}: "), message
    assert problem in message
    assert "hunter2" not in message
    options: dict[str, Any] = {"what": what}
    if secret_fields:
        options["secret_fields"] = secret_fields
    spy.assert_called_once_with(getattr(module, model), {}, **options)


def test_the_redis_plugin_uses_the_core_url_redactor() -> None:
    redis_settings = importlib.import_module("polyqueue_redis.settings")
    connection = importlib.import_module("polyqueue_redis.connection")
    assert redis_settings.redact_url is vars(connection)["redact_url"] is redaction.redact_url
