"""Bodies survive PGMQ's JSONB: objects keep their meaning, anything else its bytes."""

from __future__ import annotations

import json

import pytest

from polyqueue_pgmq.codec import decode_body, encode_body

OTHER_BODIES = [
    b"",
    b"plain text",
    b"7",
    b'"quoted"',
    b"[1, 2]",
    b"null",
    b"caf\xc3\xa9 \xe2\x98\x83",
    b"\x00\x01\xff binary",
    b"\xed\xa0\x80",  # a UTF-16 surrogate: not UTF-8
    b'{"a": NaN}',
    b'{"a": "\\u0000"}',
    b'{"a": "\\ud800"}',  # JSONB refuses a lone surrogate escape
    b'{"a": 1',
    b"[" * 100_000,  # nested deeper than `json` parses
    b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
]


@pytest.mark.parametrize("body", OTHER_BODIES)
def test_other_bodies_come_back_byte_for_byte(body: bytes) -> None:
    message, headers = encode_body(body)
    assert headers is not None
    assert decode_body(message, headers) == body


@pytest.mark.parametrize(
    "body", [b'{"job_id":42}', b'{"job_id": 7, "extra": [1, {"x": null}]}', b"{}"]
)
def test_json_objects_are_stored_as_themselves(body: bytes) -> None:
    assert encode_body(body) == (body.decode(), None)
    assert decode_body(body.decode(), None) == body


def test_jsonb_reformatting_keeps_a_notice_decodable() -> None:
    assert json.loads(decode_body('{"job_id": 42}', None)) == {"job_id": 42}


def test_a_lying_header_hands_over_the_raw_message() -> None:
    assert decode_body('"%%%"', '{"polyqueue_encoding": "base64"}') == b'"%%%"'
    assert decode_body("42", '{"polyqueue_encoding": "text"}') == b"42"
    assert decode_body("[1]", "not json") == b"[1]"
    assert decode_body(None, None) == b"null"


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("message", "headers"),
    [
        (DEEP, '{"polyqueue_encoding": "text"}'),
        (DEEP, '{"polyqueue_encoding": "base64"}'),
        ('"x"', '{"polyqueue_encoding": ' + DEEP + "}"),
        (None, '{"polyqueue_encoding": "text"}'),
    ],
)
def test_garbage_stored_by_hand_decodes_to_its_json_text(message: str | None, headers: str) -> None:
    assert decode_body(message, headers) == (message or "null").encode()
