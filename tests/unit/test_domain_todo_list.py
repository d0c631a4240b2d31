"""Given events, when a `todo_list` command, then events or the rejection."""

from __future__ import annotations

from typing import Any

import pytest

from common.catalogue import aggregate
from common.errors import Invalid, NotFound, RuleViolation
from examples.todo.rules import ImpossibleEvent
from examples.todo.todo_list import (
    TodoAdded,
    TodoCompleted,
    TodoDeleted,
    TodoRenamed,
    TodoReopened,
)

todo_list = aggregate("todo_list")


def when(given: list[Any], command_type: str, **payload: Any) -> list[Any]:
    """Fold `given`, build the command as the wire does, decide."""
    state = todo_list.fold(given)
    return todo_list.decide(state, todo_list.command(command_type, payload))


ADDED = TodoAdded(todo_id="milk", text="Buy milk")


def test_add_todo_yields_todo_added_with_trimmed_text() -> None:
    assert when([], "add_todo", todo_id="milk", text="  Buy milk ") == [ADDED]


def test_add_todo_with_an_existing_id_is_refused_as_a_rule() -> None:
    with pytest.raises(RuleViolation, match="already exists"):
        when([ADDED], "add_todo", todo_id="milk", text="again")


def test_add_todo_with_the_id_of_a_deleted_todo_is_refused() -> None:
    with pytest.raises(RuleViolation, match="already exists"):
        when([ADDED, TodoDeleted(todo_id="milk")], "add_todo", todo_id="milk", text="again")


@pytest.mark.parametrize("text", ["", "   ", "x" * 201])
def test_add_todo_text_outside_1_to_200_characters_is_invalid_naming_text(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        when([], "add_todo", todo_id="milk", text=text)
    assert caught.value.detail["field"] == "text"


def test_add_todo_text_of_exactly_200_characters_after_trimming_is_accepted() -> None:
    assert when([], "add_todo", todo_id="a", text=f" {'x' * 200} ") == [
        TodoAdded(todo_id="a", text="x" * 200)
    ]


@pytest.mark.parametrize("tid", ["a.b", "*", ">", "a b", "x" * 65, ""])
def test_add_todo_with_a_bad_todo_id_is_invalid_naming_todo_id(tid: str) -> None:
    with pytest.raises(Invalid) as caught:
        when([], "add_todo", todo_id=tid, text="ok")
    assert caught.value.detail["field"] == "todo_id"


def test_rename_todo_yields_todo_renamed() -> None:
    assert when([ADDED], "rename_todo", todo_id="milk", text="Buy oat milk") == [
        TodoRenamed(todo_id="milk", text="Buy oat milk")
    ]


def test_rename_todo_to_the_same_text_yields_no_events() -> None:
    assert when([ADDED], "rename_todo", todo_id="milk", text=" Buy milk") == []


def test_rename_of_a_missing_todo_is_refused() -> None:
    with pytest.raises(RuleViolation, match="does not exist"):
        when([], "rename_todo", todo_id="milk", text="x")


def test_rename_of_a_deleted_todo_is_refused() -> None:
    with pytest.raises(RuleViolation, match="deleted"):
        when([ADDED, TodoDeleted(todo_id="milk")], "rename_todo", todo_id="milk", text="x")


def test_complete_todo_yields_todo_completed() -> None:
    assert when([ADDED], "complete_todo", todo_id="milk") == [TodoCompleted(todo_id="milk")]


def test_completing_a_completed_todo_yields_no_events() -> None:
    assert when([ADDED, TodoCompleted(todo_id="milk")], "complete_todo", todo_id="milk") == []


def test_complete_of_a_deleted_todo_is_refused() -> None:
    with pytest.raises(RuleViolation, match="deleted"):
        when([ADDED, TodoDeleted(todo_id="milk")], "complete_todo", todo_id="milk")


def test_reopen_todo_yields_todo_reopened() -> None:
    given = [ADDED, TodoCompleted(todo_id="milk")]
    assert when(given, "reopen_todo", todo_id="milk") == [TodoReopened(todo_id="milk")]


def test_reopening_an_active_todo_yields_no_events() -> None:
    assert when([ADDED], "reopen_todo", todo_id="milk") == []


def test_reopen_of_a_missing_todo_is_refused() -> None:
    with pytest.raises(RuleViolation, match="does not exist"):
        when([], "reopen_todo", todo_id="milk")


def test_delete_todo_yields_todo_deleted() -> None:
    assert when([ADDED], "delete_todo", todo_id="milk") == [TodoDeleted(todo_id="milk")]


def test_deleting_a_deleted_todo_is_refused_because_deleted_is_terminal() -> None:
    with pytest.raises(RuleViolation, match="deleted"):
        when([ADDED, TodoDeleted(todo_id="milk")], "delete_todo", todo_id="milk")


def test_clear_completed_yields_one_todo_deleted_per_completed_live_todo() -> None:
    given = [
        ADDED,
        TodoAdded(todo_id="eggs", text="Eggs"),
        TodoAdded(todo_id="tea", text="Tea"),
        TodoAdded(todo_id="gone", text="Gone"),
        TodoCompleted(todo_id="milk"),
        TodoCompleted(todo_id="tea"),
        TodoCompleted(todo_id="gone"),
        TodoDeleted(todo_id="gone"),
    ]
    assert when(given, "clear_completed") == [
        TodoDeleted(todo_id="milk"),
        TodoDeleted(todo_id="tea"),
    ]


def test_clear_completed_without_completed_todos_yields_no_events() -> None:
    assert when([ADDED], "clear_completed") == []


def test_an_unknown_command_type_is_not_found_naming_type() -> None:
    with pytest.raises(NotFound) as caught:
        when([], "archive_todo", todo_id="milk")
    assert caught.value.detail["field"] == "type"


def test_a_missing_payload_field_is_invalid_naming_it() -> None:
    with pytest.raises(Invalid) as caught:
        when([], "add_todo", todo_id="milk")
    assert caught.value.detail["field"] == "text"


def test_a_payload_field_of_the_wrong_type_is_invalid_naming_it() -> None:
    with pytest.raises(Invalid) as caught:
        when([], "add_todo", todo_id="milk", text=42)
    assert caught.value.detail["field"] == "text"


def test_an_unknown_payload_field_is_invalid_naming_it() -> None:
    with pytest.raises(Invalid) as caught:
        when([], "complete_todo", todo_id="milk", done=True)
    assert caught.value.detail["field"] == "done"


def test_a_payload_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        todo_list.command("add_todo", ["milk"])
    assert caught.value.detail["field"] == "payload"


@pytest.mark.parametrize(
    ("given", "event", "said"),
    [
        ([ADDED], TodoAdded(todo_id="milk", text="again"), "todo 'milk' was added before"),
        ([], TodoRenamed(todo_id="milk", text="x"), "todo 'milk' is not in the list"),
        ([ADDED, TodoDeleted(todo_id="milk")], TodoCompleted(todo_id="milk"), "not in the list"),
        ([ADDED, TodoCompleted(todo_id="milk")], TodoCompleted(todo_id="milk"), "completed"),
        ([ADDED], TodoReopened(todo_id="milk"), "todo 'milk' is active already"),
    ],
)
def test_an_impossible_event_is_refused_by_evolve_naming_its_todo(
    given: list[Any], event: Any, said: str
) -> None:
    with pytest.raises(ImpossibleEvent) as refused:
        todo_list.evolve(todo_list.fold(given), event)
    assert said in str(refused.value)
