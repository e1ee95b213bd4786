"""How broker message bodies (bytes) are stored in PGMQ's JSONB `message` and `headers`.

- A body that is a JSON object (every Polyqueue notice: `{"job_id": 42}`) is stored as is, so
  PGMQ tables stay readable and any PGMQ client can ring the doorbell. JSONB may change its
  whitespace and key order, never its meaning.
- Any other UTF-8 body becomes a JSON string, with header `{"polyqueue_encoding": "text"}`.
- Anything else (invalid UTF-8, NUL) is base64 in a JSON string, header `"base64"`.

Reading is lenient and never raises: a message with no (or an unknown, or a wrong) encoding
header, a NULL message, JSON nested deeper than Python parses, is returned as its JSON text,
so a message put in the queue by hand reaches the worker, which drops what is not a notice.
"""

from __future__ import annotations

import base64
import binascii
import json

__all__ = ["ENCODING_HEADER", "decode_body", "encode_body"]

ENCODING_HEADER = "polyqueue_encoding"
_TEXT = json.dumps({ENCODING_HEADER: "text"})
_BASE64 = json.dumps({ENCODING_HEADER: "base64"})
_UNPARSABLE = (ValueError, RecursionError)  # not JSON, or nested too deep for `json`


def encode_body(body: bytes) -> tuple[str, str | None]:
    """The `(message, headers)` JSON texts that store `body`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps(base64.b64encode(body).decode("ascii")), _BASE64
    if "\x00" in text:  # JSONB cannot hold U+0000
        return json.dumps(base64.b64encode(body).decode("ascii")), _BASE64
    if _is_plain_json_object(text):
        return text, None
    return json.dumps(text), _TEXT


def decode_body(message: str | None, headers: str | None) -> bytes:
    """The body stored as `message` with `headers` (both JSON texts, as PGMQ returns them)."""
    text = message if message is not None else "null"
    encoding = _encoding(headers)
    try:
        if encoding == "text":
            value = json.loads(text)
            if isinstance(value, str):
                return value.encode("utf-8")
        elif encoding == "base64":
            value = json.loads(text)
            if isinstance(value, str):
                return base64.b64decode(value, validate=True)
    except (*_UNPARSABLE, binascii.Error):
        pass  # not what the header claims: hand the raw message over
    return text.encode("utf-8")


def _is_plain_json_object(text: str) -> bool:
    """A JSON object without escapes: JSONB stores it losslessly (no `\\u0000`, no NaN)."""
    if "\\" in text:
        return False
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except _UNPARSABLE:
        return False
    return isinstance(value, dict)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _encoding(headers: str | None) -> str | None:
    if headers is None:
        return None
    try:
        value = json.loads(headers)
    except _UNPARSABLE:
        return None
    encoding = value.get(ENCODING_HEADER) if isinstance(value, dict) else None
    return encoding if isinstance(encoding, str) else None
