"""Serializers: how results and headers become JSON text, selected by name (never pickle)."""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import pydantic_core

from polyqueue.exceptions import ConfigurationError, SerializationError
from polyqueue.handlers import check_finite

__all__ = ["JsonSerializer", "OrjsonSerializer", "Serializer"]


class Serializer(abc.ABC):
    """Turns values into JSON text and back. The text is stored in JSONB columns, so every
    serializer must produce standard JSON; they differ in speed and in which types they know.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def dumps(self, value: Any) -> str:
        """JSON text for `value`; `SerializationError` if it cannot be encoded."""

    def loads(self, text: str) -> Any:
        """The value of JSON text."""
        return json.loads(text)


class JsonSerializer(Serializer):
    """pydantic-core's encoder: models, dataclasses, datetimes, UUIDs, enums... (the default)."""

    name: ClassVar[str] = "json"

    def dumps(self, value: Any) -> str:
        """Encode with pydantic-core (bare NaN/Infinity come out as JSON constants)."""
        try:
            encoded = pydantic_core.to_json(value).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise SerializationError(
                f"a {type(value).__name__} is not JSON-serialisable: {exc}"
            ) from exc
        if "null" in encoded:  # a model's NaN or infinity comes out as null: refuse it
            check_finite(value, f"a {type(value).__name__}")
        return encoded


class OrjsonSerializer(Serializer):
    """orjson: faster on large dicts and lists (`pip install 'polyqueue[orjson]'`)."""

    name: ClassVar[str] = "orjson"

    def __init__(self) -> None:
        try:
            import orjson  # noqa: PLC0415  (optional extra)
        except ImportError as exc:
            raise ConfigurationError(
                "POLYQUEUE_SERIALIZER=orjson needs orjson: `pip install 'polyqueue[orjson]'`"
            ) from exc
        self._orjson = orjson

    def dumps(self, value: Any) -> str:
        """Encode with orjson; pydantic models and other types go through pydantic-core."""
        try:
            option = self._orjson.OPT_PASSTHROUGH_DATETIME  # datetimes as pydantic writes them
            encoded: bytes = self._orjson.dumps(value, default=_fallback, option=option)
        except TypeError as exc:
            raise SerializationError(
                f"a {type(value).__name__} is not JSON-serialisable: {exc}"
            ) from exc
        return encoded.decode()

    def loads(self, text: str) -> Any:
        """Decode with orjson."""
        return self._orjson.loads(text)


def _fallback(value: Any) -> Any:
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise TypeError(str(exc)) from exc
