"""`common.errors.decoded`: how the writer and the projector read a request over NATS."""

from __future__ import annotations

import msgspec
import pytest

from common.errors import BadRequest, Invalid, decoded
from common.messages import CommandRequest, QueryRequest

_queries = msgspec.json.Decoder(QueryRequest)
_commands = msgspec.json.Decoder(CommandRequest)


def test_a_well_formed_request_decodes_to_its_struct() -> None:
    request = decoded(_queries, b'{"name": "get", "min_seq": 3}', "query request")
    assert (request.name, request.min_seq) == ("get", 3)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"name": "x",}', b"\xff"])
def test_bytes_that_are_not_json_are_a_400_naming_the_message_and_its_hint(body: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        decoded(_commands, body, "command request", "; send a CommandRequest")
    assert refused.value.message.startswith("the command request is not JSON: ")
    assert refused.value.message.endswith("; send a CommandRequest")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "x", "min_seq": "soon"}', "min_seq"),
        (b'{"min_seq": 1}', "name"),
        (b"[]", "(body)"),
    ],
)
def test_json_of_the_wrong_shape_is_a_422_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        decoded(_queries, body, "query request")
    assert refused.value.detail["field"] == field
    assert refused.value.message.startswith("invalid query request: ")
