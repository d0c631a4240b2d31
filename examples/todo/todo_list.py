"""The `todo_list` aggregate: TodoMVC as pure decide/evolve functions."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct, field
from msgspec.structs import replace

from examples.todo.rules import possible, require, todo_id, todo_text


# Commands: orders, tagged by their snake_case `type`.
class AddTodo(Struct, frozen=True, tag="add_todo", tag_field="type", forbid_unknown_fields=True):
    todo_id: str
    text: str


class RenameTodo(
    Struct, frozen=True, tag="rename_todo", tag_field="type", forbid_unknown_fields=True
):
    todo_id: str
    text: str


class CompleteTodo(
    Struct, frozen=True, tag="complete_todo", tag_field="type", forbid_unknown_fields=True
):
    todo_id: str


class ReopenTodo(
    Struct, frozen=True, tag="reopen_todo", tag_field="type", forbid_unknown_fields=True
):
    todo_id: str


class DeleteTodo(
    Struct, frozen=True, tag="delete_todo", tag_field="type", forbid_unknown_fields=True
):
    todo_id: str


class ClearCompleted(
    Struct, frozen=True, tag="clear_completed", tag_field="type", forbid_unknown_fields=True
):
    pass


Command = AddTodo | RenameTodo | CompleteTodo | ReopenTodo | DeleteTodo | ClearCompleted


# Events: facts, in the past tense, tagged by their `event_type`. Their fields carry the
# domain `decide` guarantees, so a stored payload outside it is not an event of this type.
TodoId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")]
Text = Annotated[str, Meta(min_length=1, max_length=200)]


class TodoAdded(Struct, frozen=True, tag="todo_added", tag_field="event_type"):
    todo_id: TodoId
    text: Text


class TodoRenamed(Struct, frozen=True, tag="todo_renamed", tag_field="event_type"):
    todo_id: TodoId
    text: Text


class TodoCompleted(Struct, frozen=True, tag="todo_completed", tag_field="event_type"):
    todo_id: TodoId


class TodoReopened(Struct, frozen=True, tag="todo_reopened", tag_field="event_type"):
    todo_id: TodoId


class TodoDeleted(Struct, frozen=True, tag="todo_deleted", tag_field="event_type"):
    todo_id: TodoId


Event = TodoAdded | TodoRenamed | TodoCompleted | TodoReopened | TodoDeleted

# Schema history: v1 of `todo_added` called the text `title`. Stored events are never
# rewritten; an old payload is upcast step by step when it is read.
SCHEMAS = {"todo_added": 2}


def _todo_added_v1_to_v2(payload: dict[str, object]) -> dict[str, object]:
    upcast = {key: value for key, value in payload.items() if key != "title"}
    upcast["text"] = payload["title"]
    return upcast


UPCASTERS = {("todo_added", 1): _todo_added_v1_to_v2}
CRITICAL = frozenset({"todo_deleted"})  # never debounced away on a feed


class Todo(Struct, frozen=True):
    text: str
    completed: bool = False
    deleted: bool = False


class TodoList(Struct, frozen=True):
    todos: dict[str, Todo] = field(default_factory=dict)


INITIAL = TodoList()


def _live(state: TodoList, tid: str) -> Todo:
    todo = state.todos.get(tid)
    require(todo is not None, f"todo {tid!r} does not exist in this list; add it first")
    assert todo is not None
    require(not todo.deleted, f"todo {tid!r} was deleted; deleted todos cannot change")
    return todo


def decide(state: TodoList, command: Command) -> list[Event]:
    match command:
        case AddTodo(todo_id=tid, text=text):
            require(
                todo_id(tid) not in state.todos,
                f"todo {tid!r} already exists in this list; pick a new todo_id",
            )
            return [TodoAdded(todo_id=tid, text=todo_text(text))]
        case RenameTodo(todo_id=tid, text=text):
            todo, text = _live(state, tid), todo_text(text)
            return [] if todo.text == text else [TodoRenamed(todo_id=tid, text=text)]
        case CompleteTodo(todo_id=tid):
            return [] if _live(state, tid).completed else [TodoCompleted(todo_id=tid)]
        case ReopenTodo(todo_id=tid):
            return [TodoReopened(todo_id=tid)] if _live(state, tid).completed else []
        case DeleteTodo(todo_id=tid):
            _live(state, tid)
            return [TodoDeleted(todo_id=tid)]
        case ClearCompleted():
            return [
                TodoDeleted(todo_id=tid)
                for tid, todo in state.todos.items()
                if todo.completed and not todo.deleted
            ]


def _changeable(todos: dict[str, Todo], tid: str) -> Todo:
    todo = todos.get(tid)
    possible(todo is not None and not todo.deleted, "todo {!r} is not in the list", tid)
    assert todo is not None
    return todo


def evolve(state: TodoList, event: Event) -> TodoList:
    """The state after `event`; ImpossibleEvent for an event `decide` could not have made
    here (an add of a todo in the list, a change of one not in it or deleted, completing a
    completed todo or reopening an active one)."""
    todos = state.todos
    match event:
        case TodoAdded(todo_id=tid, text=text):
            possible(tid not in todos, "todo {!r} was added before", tid)
            return TodoList({**todos, tid: Todo(text=text)})
        case TodoRenamed(todo_id=tid, text=text):
            return TodoList({**todos, tid: replace(_changeable(todos, tid), text=text)})
        case TodoCompleted(todo_id=tid):
            todo = _changeable(todos, tid)
            possible(not todo.completed, "todo {!r} is completed already", tid)
            return TodoList({**todos, tid: replace(todo, completed=True)})
        case TodoReopened(todo_id=tid):
            todo = _changeable(todos, tid)
            possible(todo.completed, "todo {!r} is active already", tid)
            return TodoList({**todos, tid: replace(todo, completed=False)})
        case TodoDeleted(todo_id=tid):
            return TodoList({**todos, tid: replace(_changeable(todos, tid), deleted=True)})
