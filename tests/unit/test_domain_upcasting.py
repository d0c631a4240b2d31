"""Stored events are never rewritten: old schemas are upcast when read."""

from __future__ import annotations

import msgspec
import pytest

from common.app import Aggregate
from common.catalogue import aggregate
from examples.todo.todo_list import Todo, TodoAdded, TodoCompleted

todo_list = aggregate("todo_list")


def test_a_stored_v1_todo_added_with_title_still_folds() -> None:
    stored = [
        ("todo_added", 1, {"todo_id": "milk", "title": "Buy milk"}),
        ("todo_completed", 1, {"todo_id": "milk"}),
    ]
    events = [todo_list.from_payload(kind, schema, payload) for kind, schema, payload in stored]
    assert events == [TodoAdded(todo_id="milk", text="Buy milk"), TodoCompleted(todo_id="milk")]
    assert todo_list.fold(events).todos == {"milk": Todo(text="Buy milk", completed=True)}


def test_new_todo_added_events_are_written_as_schema_2_with_text() -> None:
    event_type, payload = todo_list.to_payload(TodoAdded(todo_id="milk", text="Buy milk"))
    assert (event_type, todo_list.schema(event_type)) == ("todo_added", 2)
    assert payload == {"todo_id": "milk", "text": "Buy milk"}
    assert todo_list.from_payload(event_type, 2, payload) == TodoAdded("milk", "Buy milk")


def test_a_schema_without_an_upcaster_is_reported_not_guessed() -> None:
    renamed_twice = Aggregate(
        name="t",
        initial=None,
        decide=lambda state, command: [],
        evolve=lambda state, event: state,
        commands=_Command,
        events=_Event,
        schemas={"todo_renamed": 2},
    )
    with pytest.raises(ValueError, match="no upcaster for todo_renamed schema 1"):
        renamed_twice.upcast("todo_renamed", 1, {"todo_id": "milk", "text": "x"})


class _Command(msgspec.Struct, tag="noop", tag_field="type"):
    pass


class _Event(msgspec.Struct, tag="todo_renamed", tag_field="event_type"):
    todo_id: str
    text: str


def test_a_payload_is_read_as_its_own_event_type_whatever_tag_it_carries() -> None:
    carried = {"todo_id": "milk", "text": "Buy milk", "event_type": "todo_renamed"}
    assert todo_list.from_payload("todo_added", 2, carried) == TodoAdded("milk", "Buy milk")
    with pytest.raises(msgspec.ValidationError):
        todo_list.from_payload("todo_exploded", 1, {"todo_id": "milk"})
    with pytest.raises(msgspec.ValidationError):
        todo_list.from_payload("todo_completed", 1, {"todo_id": "no spaces allowed"})
