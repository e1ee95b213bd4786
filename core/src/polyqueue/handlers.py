"""Handlers: what `Polyqueue.register` records about a function, and payload validation."""

from __future__ import annotations

import inspect
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from polyqueue.context import JobContext
from polyqueue.exceptions import (
    ConfigurationError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SerializationError,
    TerminalError,
)

__all__ = [
    "Handler",
    "RetryBackoff",
    "build_handler",
    "check_finite",
    "check_storable",
    "describe_validation_error",
]

RetryBackoff = Callable[[int], float]
"""A handler's own retry delay: `(attempt) -> seconds`, where `attempt` is the number of the
failed attempt within the job's current budget (1 for the first). A `RetryPolicy` is one."""


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered function with its payload model and job options."""

    name: str
    function: Callable[..., Any]
    payload_model: type[BaseModel]
    returns: Any
    queue: str
    max_attempts: int
    max_run_seconds: float | None
    timeout_strategy: str
    takes_context: bool
    is_async: bool
    retry_backoff: RetryBackoff | None = None
    """Replaces the app-wide backoff for this handler's retries, if given."""

    def encode_payload(self, payload: BaseModel | Mapping[str, Any], limit: int) -> str:
        """Validate `payload` against the model; return its JSON (at most `limit` bytes)."""
        return self.encode(payload, limit)[1]

    def encode(self, payload: BaseModel | Mapping[str, Any], limit: int) -> tuple[BaseModel, str]:
        """Validate `payload` against the model; return the model and its JSON (at most
        `limit` bytes)."""
        model = self._validate(payload)
        what = f"payload for {self.name!r}"
        try:
            encoded = model.model_dump_json()
        except PydanticSerializationError as exc:  # bytes that are not UTF-8, an object...
            raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from exc
        check_storable(encoded, what)
        if "null" in encoded:  # pydantic writes NaN and infinities as null: refuse them
            check_finite(model.model_dump(), what)
        check_size(self.name, encoded, limit)
        return model, encoded

    def _validate(self, payload: BaseModel | Mapping[str, Any]) -> BaseModel:
        if isinstance(payload, self.payload_model):
            return payload
        data = payload.model_dump() if isinstance(payload, BaseModel) else payload
        if not isinstance(data, Mapping):
            raise InvalidPayloadError(
                f"payload for {self.name!r} must be a {self.payload_model.__name__} or a dict, "
                f"not {type(payload).__name__}"
            )
        try:
            return self.payload_model.model_validate(data)
        except ValidationError as exc:
            raise InvalidPayloadError(
                f"payload for {self.name!r} is invalid: {describe_validation_error(exc)}"
            ) from exc

    def decode_payload(self, payload_json: str) -> BaseModel:
        """The stored payload as the model; a mismatch is a `TerminalError` naming the field."""
        try:
            return self.payload_model.model_validate_json(payload_json)
        except ValidationError as exc:
            raise TerminalError(
                f"payload does not match {self.payload_model.__name__}: "
                f"{describe_validation_error(exc)}"
            ) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """`field.path: message` for each error, without echoing values (they may be secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def check_size(name: str, encoded: str, limit: int) -> None:
    """Refuse a payload whose UTF-8 encoding exceeds `limit` bytes."""
    size = len(encoded.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"payload for {name!r} is {size} bytes, over the limit of {limit} bytes "
            "(POLYQUEUE_MAX_PAYLOAD_BYTES); store large data elsewhere and pass a reference"
        )


def check_storable(encoded: str, what: str) -> None:
    """Refuse JSON that PostgreSQL's JSONB rejects: NaN/Infinity and the NUL character."""
    if "\\u0000" in encoded:
        raise SerializationError(f"{what} contains a NUL character, which JSONB cannot store")
    if "NaN" in encoded or "Infinity" in encoded:
        try:
            json.loads(encoded, parse_constant=_reject_constant)
        except ValueError as exc:
            raise SerializationError(f"{what} contains {exc}, which JSON cannot store") from exc


def _reject_constant(name: str) -> None:
    raise ValueError(name)


def check_finite(value: Any, what: str, path: str = "") -> None:
    """Refuse NaN and infinities anywhere in `value` (dicts, lists, models): JSON has no
    such numbers, and storing them as `null` would change the data without a word."""
    if isinstance(value, float) and not math.isfinite(value):
        where = f" at {path}" if path else ""
        raise SerializationError(f"{what} contains {value!r}{where}, which JSON cannot store")
    if isinstance(value, BaseModel):
        check_finite(value.model_dump(), what, path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, what, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            check_finite(item, what, f"{path}[{index}]")


def build_handler(
    function: Callable[..., Any],
    *,
    name: str,
    queue: str,
    max_attempts: int,
    max_run_seconds: float | None,
    timeout_strategy: str,
    retry_backoff: RetryBackoff | None = None,
) -> Handler:
    """Inspect `function`'s annotations; `ConfigurationError` if they do not fit."""
    if max_attempts < 1:
        raise ConfigurationError(f"handler {name!r}: max_attempts must be at least 1")
    if max_run_seconds is not None and max_run_seconds <= 0:
        raise ConfigurationError(f"handler {name!r}: max_run_seconds must be positive")
    if timeout_strategy not in {"retry", "fail", "ignore"}:
        raise ConfigurationError(
            f"handler {name!r}: timeout_strategy must be retry, fail or ignore, "
            f"not {timeout_strategy!r}"
        )
    if retry_backoff is not None and not callable(retry_backoff):
        raise ConfigurationError(
            f"handler {name!r}: retry_backoff must be a RetryPolicy or a callable "
            f"(attempt) -> seconds, not {type(retry_backoff).__name__}"
        )
    model, takes_context, returns = _inspect_signature(function, name)
    return Handler(
        name=name,
        function=function,
        payload_model=model,
        returns=returns,
        queue=queue,
        max_attempts=max_attempts,
        max_run_seconds=max_run_seconds,
        timeout_strategy=timeout_strategy,
        takes_context=takes_context,
        is_async=inspect.iscoroutinefunction(function),
        retry_backoff=retry_backoff,
    )


def _inspect_signature(
    function: Callable[..., Any], name: str
) -> tuple[type[BaseModel], bool, Any]:
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:
        raise ConfigurationError(f"handler {name!r}: cannot resolve annotations: {exc}") from exc
    parameters = list(inspect.signature(function).parameters.values())
    if not 1 <= len(parameters) <= 2:  # noqa: PLR2004
        raise ConfigurationError(
            f"handler {name!r} must take (payload: SomeModel) or (payload, ctx: JobContext)"
        )
    model = hints.get(parameters[0].name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigurationError(
            f"handler {name!r}: first parameter {parameters[0].name!r} must be annotated "
            "with a pydantic BaseModel subclass"
        )
    takes_context = len(parameters) == 2  # noqa: PLR2004
    if takes_context and hints.get(parameters[1].name, JobContext) is not JobContext:
        raise ConfigurationError(f"handler {name!r}: second parameter must be a JobContext")
    return model, takes_context, hints.get("return", Any)
