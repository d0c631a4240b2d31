"""Reading a stored event (pure): every envelope field in its domain, history possible.

One rule (`common.envelope.decode_stored`, the aggregates' `evolve`) for the writer, the
projector and the gateway; the examples are members of the kinds an outsider tried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.catalogue import aggregate
from common.envelope import (
    MAX_VERSION,
    Undecodable,
    decode_stored,
    encode,
    new_envelope,
    utc_now,
    uuid7,
)
from examples.todo.rules import ImpossibleEvent
from examples.todo.todo_list import TodoAdded, TodoCompleted, TodoDeleted, TodoRenamed, TodoReopened
from examples.todo.user_profile import ProfileUpdated, UserDeactivated, UserRegistered

GOOD: dict[str, Any] = {
    "event_id": uuid7(),
    "aggregate_type": "todo_list",
    "aggregate_id": "l",
    "version": 1,
    "event_type": "todo_added",
    "schema": 2,
    "occurred_at": "2026-01-01T00:00:00.123456Z",
    "payload": {"todo_id": "a", "text": "one"},
    "metadata": {"command_id": "c", "correlation_id": "corr", "actor": "ann"},
}


def _decode(**changes: Any) -> Any:
    return decode_stored(json.dumps({**GOOD, **changes}).encode(), "todo_list", "l")


def test_an_envelope_the_writer_writes_is_read() -> None:
    assert _decode(occurred_at=utc_now(), version=MAX_VERSION).version == MAX_VERSION


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2**63 - 1},
        {"version": 2**63},
        {"version": 2**70},
        {"version": 0},
        {"version": -1},
        {"version": 1.5},
        {"version": True},
        {"schema": 99},
        {"schema": 0},
        {"schema": 2**64},
        {"occurred_at": "yesterday\r"},
        {"occurred_at": "2026-02-30T00:00:00Z"},
        {"occurred_at": "2026-01-01T24:00:00Z"},
        {"occurred_at": "0000-01-01T00:00:00Z"},
        {"occurred_at": "2026-01-01T00:00:00+01:00"},
        {"occurred_at": "2026-01-01T00:00:00Z\n"},
        {"occurred_at": "2026-01-01 00:00:00Z"},
        {"event_type": "todo_archived"},
        {"event_id": "x\r\nevent: y"},
        {"event_id": ""},
        {"payload": {"todo_id": 'b"><img src=x onerror=alert(1)>', "text": "x"}},
        {"payload": {"todo_id": "a\n", "text": "x"}},
        {"payload": {"todo_id": "a"}},
        {"payload": {"todo_id": "a", "text": ""}},
        {"payload": {"todo_id": "a", "text": "x" * 201}},
        {"payload": {"todo_id": 1, "text": "x"}},
        {"metadata": {"command_id": "c d", "correlation_id": "c"}},
        {"metadata": {"command_id": "c", "correlation_id": "c\r"}},
        {"metadata": {"command_id": "c", "correlation_id": "c", "actor": "a" * 201}},
    ],
    ids=repr,
)
def test_a_field_outside_its_domain_makes_the_event_undecodable(changes: dict[str, Any]) -> None:
    with pytest.raises(Undecodable):
        _decode(**changes)


DEEP = "[" * 5_000 + "]" * 5_000  # deeper than msgspec decodes: RecursionError


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        '{"a":' + DEEP + "}",
        json.dumps({**GOOD, "payload": {"todo_id": "a", "text": "one"}})[:-1]
        + ',"x":'
        + DEEP
        + "}",
        json.dumps(GOOD).replace('"payload": {', '"payload": {"deep": ' + DEEP + ", "),
        json.dumps(GOOD).replace('"metadata": {', '"metadata": {"deep": ' + DEEP + ", "),
        '{"a":' * 5_000 + "1" + "}" * 5_000,
    ],
    ids=["array", "in an object", "an extra field", "in the payload", "in the metadata", "objects"],
)
def test_json_nested_deeper_than_the_decoder_goes_is_undecodable(body: str) -> None:
    with pytest.raises(Undecodable):  # not RecursionError: a poison message, not a crash
        decode_stored(body.encode(), "todo_list", "l")


def test_a_payload_of_an_older_schema_is_checked_after_upcasting() -> None:
    assert _decode(schema=1, payload={"todo_id": "a", "title": "one"}).schema == 1
    with pytest.raises(Undecodable, match="title"):
        _decode(schema=1, payload={"todo_id": "a", "text": "one"})


@given(
    version=st.integers(),
    occurred_at=st.text(max_size=40),
    todo_id=st.text(max_size=70),
    schema=st.integers(),
)
def test_whatever_is_read_has_every_field_in_its_domain(
    version: int, occurred_at: str, todo_id: str, schema: int
) -> None:
    try:
        event = _decode(
            version=version,
            occurred_at=occurred_at,
            schema=schema,
            payload={"todo_id": todo_id, "title": "t", "text": "t"},
        )
    except Undecodable:
        return
    assert 1 <= event.version <= MAX_VERSION and schema in (1, 2)
    assert occurred_at.endswith("Z") and occurred_at.isascii() and len(occurred_at) <= 27
    assert todo_id.isascii() and todo_id.replace("_", "").replace("-", "").isalnum()


TODO = aggregate("todo_list")
USER = aggregate("user_profile")
ADDED = TodoAdded(todo_id="a", text="one")


@pytest.mark.parametrize(
    "history",
    [
        [ADDED, ADDED],
        [ADDED, TodoDeleted(todo_id="a"), ADDED],
        [TodoRenamed(todo_id="a", text="x")],
        [ADDED, TodoDeleted(todo_id="a"), TodoRenamed(todo_id="a", text="x")],
        [ADDED, TodoCompleted(todo_id="a"), TodoCompleted(todo_id="a")],
        [ADDED, TodoReopened(todo_id="a")],
        [ADDED, TodoDeleted(todo_id="a"), TodoDeleted(todo_id="a")],
    ],
    ids=repr,
)
def test_a_todo_list_history_decide_could_not_have_made_is_impossible(history: list[Any]) -> None:
    with pytest.raises(ImpossibleEvent):
        TODO.fold(history)


@pytest.mark.parametrize(
    "history",
    [
        [UserRegistered(name="a", email="a@x.io")] * 2,
        [ProfileUpdated(name="b")],
        [UserDeactivated()],
        [UserRegistered(name="a", email="a@x.io"), UserDeactivated(), ProfileUpdated(name="b")],
    ],
    ids=repr,
)
def test_a_user_history_decide_could_not_have_made_is_impossible(history: list[Any]) -> None:
    with pytest.raises(ImpossibleEvent):
        USER.fold(history)


@given(text=st.text(min_size=1, max_size=200), version=st.integers(1, MAX_VERSION))
def test_an_envelope_built_by_new_envelope_is_read_back_unchanged(text: str, version: int) -> None:
    built = new_envelope("todo_list", "l", version, "todo_added", {"todo_id": "a", "text": text},
                         schema=2, command_id="c")  # fmt: skip
    assert decode_stored(encode(built), "todo_list", "l") == built
    assert built.metadata.correlation_id == built.metadata.command_id == "c"


def test_new_envelope_defaults_to_a_fresh_event_id_the_time_now_and_a_fresh_command() -> None:
    one, two = (new_envelope("todo_list", "l", 1, "todo_deleted", {"todo_id": "a"})
                for _ in range(2))  # fmt: skip
    assert one.event_id != two.event_id and one.metadata.command_id != two.metadata.command_id
    assert one.metadata.correlation_id == one.metadata.command_id
    assert decode_stored(encode(one), "todo_list", "l").occurred_at <= utc_now()
