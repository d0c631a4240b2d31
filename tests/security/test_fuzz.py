"""Hypothesis against every decoder of outside input: only the documented errors come out."""

from __future__ import annotations

import contextlib
import json
import string
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import envelope
from common.catalogue import aggregate, current
from common.errors import Invalid, IronstarError, NotFound, RuleViolation, TooLarge, Unauthorized
from common.messages import CommandBody
from common.subjects import Subjects, valid_id
from common.tokens import Verifier
from gateway.feed.sse import parse_last_event_id
from gateway.feed.topics import parse_topics
from gateway.security.limits import _fits, _refuse, check_json

AGGREGATES = current().aggregates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
command_types = st.sampled_from(
    [*sorted(t for a in AGGREGATES.values() for t in a.command_types), "nope", ""]
)
fields = st.sampled_from(["todo_id", "text", "name", "email", "type", "x"])
payloads = st.dictionaries(fields, json_values | st.text(max_size=300), max_size=4) | json_values
tokens_text = st.text(string.printable, max_size=60)
FUZZ = settings(max_examples=300, deadline=None)


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_envelope_decoder_raises_only_msgspec_errors(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):  # ValidationError is a DecodeError
        envelope.decode(data)


@FUZZ
@given(
    st.sampled_from(sorted(AGGREGATES)),
    command_types,
    payloads,
)
def test_command_decoders_raise_only_not_found_or_invalid(
    kind: str, command_type: str, payload: Any
) -> None:
    found = aggregate(kind)
    try:
        command = found.command(command_type, payload)
    except (NotFound, Invalid):
        return
    with contextlib.suppress(RuleViolation, Invalid):
        found.decide(found.initial, command)


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_command_body_decoder_raises_only_msgspec_errors(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        msgspec.json.decode(data, type=CommandBody)


@FUZZ
@given(st.text(max_size=100))
def test_valid_ids_never_carry_subject_syntax(value: str) -> None:
    try:
        ident = valid_id(value)
    except Invalid as exc:
        assert exc.detail["field"] == "aggregate_id"
        return
    assert not set(ident) & set(".*> \t\r\n")
    assert Subjects("p").events("todo_list", ident).split(".") == [
        "p",
        "events",
        "todo_list",
        ident,
    ]


@FUZZ
@given(st.text(max_size=80))
def test_topic_parser_raises_only_invalid_or_not_found_naming_its_field(value: str) -> None:
    try:
        topics = parse_topics(value)
    except (Invalid, NotFound) as exc:
        assert exc.detail["field"] in ("topics", "aggregate_type")
        return
    for topic in topics:
        assert topic.aggregate_type in AGGREGATES


@FUZZ
@given(
    st.text(max_size=40) | st.integers(min_value=0).map(str) | st.sampled_from(["²", "9" * 5000])
)
def test_last_event_id_parser_never_raises(value: str) -> None:
    parsed = parse_last_event_id(value)
    assert parsed is None or parsed >= -1


@FUZZ
@given(tokens_text | st.lists(tokens_text, min_size=3, max_size=3).map(".".join))
def test_token_verifier_raises_only_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized):
        Verifier(b"k" * 32).verify(token)


@FUZZ
@given(json_values)
def test_json_limits_raise_only_too_large(value: Any) -> None:
    try:
        check_json(value, max_depth=3, max_string_bytes=20)
    except TooLarge as exc:
        assert exc.detail["field"]


@FUZZ
@given(json_values, st.integers(1, 4), st.integers(4, 40))
def test_json_limits_fast_and_naming_passes_agree(value: Any, depth: int, size: int) -> None:
    refused = False
    try:
        _refuse(value, depth, size)
    except TooLarge:
        refused = True
    assert refused is not _fits(value, depth, size)


def test_every_documented_error_is_an_ironstar_error() -> None:
    for cls in (Invalid, NotFound, RuleViolation, TooLarge, Unauthorized):
        assert issubclass(cls, IronstarError)
