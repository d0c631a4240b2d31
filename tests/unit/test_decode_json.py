"""One rule for a JSON document a service receives (`common.errors.decode_json`): the
wrong shape is a 422 naming the field, bytes that are not JSON the caller's own error."""

from __future__ import annotations

import msgspec
import pytest

from common.errors import BadRequest, Invalid, decode_json


class Body(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    count: int = 0


_bodies = msgspec.json.Decoder(Body)


def _not_json(why: str) -> BadRequest:
    return BadRequest(f"send a JSON Body ({why})")


def test_a_document_of_the_right_shape_is_decoded() -> None:
    assert decode_json(_bodies, b'{"type": "a", "count": 2}', "body", _not_json) == Body("a", 2)


@pytest.mark.parametrize(
    ("data", "field"),
    [(b'{"type": 1}', "type"), (b'{"count": 1}', "type"), (b'{"type": "a", "x": 1}', "x"),
     (b"[]", "(body)")],
)  # fmt: skip
def test_json_of_the_wrong_shape_is_a_422_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_json(_bodies, data, "test body", _not_json)
    assert caught.value.detail["field"] == field
    assert caught.value.message.startswith("invalid test body: ")


@pytest.mark.parametrize("data", [b"", b"{", b"\xff", b'{"type": "a"} trailing'])
def test_bytes_that_are_not_json_raise_the_callers_error_with_the_reason(data: bytes) -> None:
    with pytest.raises(BadRequest, match=r"^send a JSON Body \(.+\)$"):
        decode_json(_bodies, data, "test body", _not_json)
