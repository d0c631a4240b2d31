"""`todo_lists`: TodoMVC state per list (one row per todo) and todo counts over time.

A batch reads the rows of the todos it touches once (one hash join), folds its events
onto them with the domain's own `evolve` (so an event `decide` could not have made, such
as adding a todo already in the list, is `Unapplicable` here as it is undecidable in the
writer), then writes: the todos new in the batch as one INSERT of their final rows, the
others as one UPDATE. `todo_changes` holds, per minute, how the numbers of active and
completed todos moved (the `todos_over_time` view in `analytics` sums it), from each
todo's state before and after each event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from common.domain import AGGREGATES
from common.domain.todo_list import INITIAL, Todo, TodoAdded, TodoList
from common.envelope import Envelope
from projector.projection import Event, Query, each, minute, rows
from projector.projections.bulk import add_counts, insert, lookup, update

name = "todo_lists"
version = 4
tables = ("todos", "todo_changes")
ddl = (
    # No primary key: rows are appended when added and updated by a join (see bulk.py).
    """CREATE TABLE IF NOT EXISTS todos (
        list_id VARCHAR NOT NULL,
        todo_id VARCHAR NOT NULL,
        text VARCHAR,
        completed BOOLEAN,
        deleted BOOLEAN NOT NULL,
        position BIGINT,
        created_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        updated_seq BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS todo_changes (
        minute TIMESTAMPTZ PRIMARY KEY,
        active_delta BIGINT NOT NULL,
        completed_delta BIGINT NOT NULL
    )""",
)
_S, _B, _I = pa.string(), pa.bool_(), pa.int64()  # timestamps travel as RFC 3339 text
_COLUMNS = {
    "list_id": _S, "todo_id": _S, "text": _S, "completed": _B, "deleted": _B,
    "position": _I, "created_at": _S, "updated_at": _S, "updated_seq": _I,
}  # fmt: skip
_KEY = {"list_id": _S, "todo_id": _S}
_CHANGES = {c: t for c, t in _COLUMNS.items() if c not in ("position", "created_at")}
_SET = (
    "text = b.text, completed = b.completed, deleted = b.deleted, "
    "updated_at = b.updated_at, updated_seq = b.updated_seq"
)
_TODOS = AGGREGATES["todo_list"]
Key = tuple[str, str]


def _counted(todo: Todo | None) -> tuple[int, int]:
    """(active, completed) that one todo adds to the counts."""
    if todo is None or todo.deleted:
        return 0, 0
    return (0, 1) if todo.completed else (1, 0)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "todo_list"]
    if not mine:
        return
    touched = sorted({(e.aggregate_id, str(e.payload.get("todo_id"))) for _, e in mine})
    found = lookup(con, "todos", _KEY, touched,
                   "t.list_id, t.todo_id, t.text, t.completed, t.deleted")  # fmt: skip
    before: defaultdict[str, dict[str, Todo]] = defaultdict(dict)
    for list_id, tid, text, completed, deleted in found:
        before[list_id][tid] = Todo(text=text, completed=bool(completed), deleted=deleted)
    lists = {list_id: TodoList(todos) for list_id, todos in before.items()}
    changed: dict[Key, dict[str, Any]] = {}
    counts: defaultdict[tuple[str], list[int]] = defaultdict(lambda: [0, 0])

    def step(seq: int, e: Envelope) -> None:
        event = _TODOS.from_payload(e.event_type, e.schema, e.payload)
        state = lists.get(e.aggregate_id, INITIAL)
        tid = event.todo_id
        old = state.todos.get(tid)
        state = lists[e.aggregate_id] = _TODOS.evolve(state, event)  # ImpossibleEvent
        new = state.todos[tid]
        row = changed.setdefault((e.aggregate_id, tid), {"list_id": e.aggregate_id, "todo_id": tid})
        if isinstance(event, TodoAdded):
            row["position"], row["created_at"] = e.version, e.occurred_at
        row.update(text=new.text, completed=new.completed, deleted=new.deleted,
                   updated_at=e.occurred_at, updated_seq=seq)  # fmt: skip
        (was_active, was_completed), (active, completed) = _counted(old), _counted(new)
        if (active, completed) != (was_active, was_completed):
            count = counts[(minute(e.occurred_at),)]
            count[0] += active - was_active
            count[1] += completed - was_completed

    each(mine, step)
    existing = {(list_id, tid) for list_id, todos in before.items() for tid in todos}
    insert(con, "todos", _COLUMNS, [row for key, row in changed.items() if key not in existing])
    update(con, "todos", tuple(_KEY), _CHANGES,
           [row for key, row in changed.items() if key in existing], _SET)  # fmt: skip
    add_counts(con, "todo_changes", {"minute": _S}, counts, ("active_delta", "completed_delta"))


def get_list(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, Any]:
    list_id = params["list_id"]
    items = rows(
        con,
        "SELECT todo_id, text, completed, updated_seq FROM todos "
        "WHERE list_id = ? AND NOT deleted ORDER BY position",
        [list_id],
    )
    active = sum(1 for item in items if not item["completed"])
    return {
        "list_id": list_id,
        "items": items,
        "active": active,
        "completed": len(items) - active,
    }


def list_lists(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
    return rows(
        con,
        "SELECT list_id, count(*) FILTER (NOT deleted AND NOT completed) AS active, "
        "count(*) FILTER (NOT deleted AND completed) AS completed, max(updated_at) AS updated_at "
        "FROM todos GROUP BY list_id ORDER BY updated_at DESC LIMIT 100",
    )


queries: dict[str, Query] = {"get": get_list, "lists": list_lists}
