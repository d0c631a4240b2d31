"""`todo_lists`: TodoMVC state per list (one row per todo) and todo counts over time.

A batch is written without reading first: each touched todo becomes one partial row (None
= unchanged) merged by a single upsert. `todo_changes` holds, per minute, how the numbers
of active and completed todos moved (the `todos_over_time` view in `analytics` sums it).
The domain guarantees what a change implies: `todo_completed` only happens to an active
todo, `todo_reopened` only to a completed one, deleted is terminal; only a delete whose
todo was not touched before in the batch needs its prior state, which the upsert returns.
A change to a todo never added (no created_at after the merge) is dropped again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import duckdb

from common.envelope import Envelope
from projector.projection import Event, Query, each, minute, payload, rows
from projector.projections.upsert import add_counts, merge

name = "todo_lists"
version = 2
tables = ("todos", "todo_changes")
ddl = (
    """CREATE TABLE IF NOT EXISTS todos (
        list_id VARCHAR NOT NULL,
        todo_id VARCHAR NOT NULL,
        text VARCHAR,
        completed BOOLEAN,
        deleted BOOLEAN NOT NULL,
        position BIGINT,
        created_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        updated_seq BIGINT NOT NULL,
        PRIMARY KEY (list_id, todo_id)
    )""",
    """CREATE TABLE IF NOT EXISTS todo_changes (
        minute TIMESTAMPTZ PRIMARY KEY,
        active_delta BIGINT NOT NULL,
        completed_delta BIGINT NOT NULL
    )""",
)
_COLUMNS = (
    "list_id", "todo_id", "text", "completed", "deleted",
    "position", "created_at", "updated_at", "updated_seq",
)  # fmt: skip
_MERGED = (
    "text = coalesce(excluded.text, todos.text), "
    "completed = coalesce(excluded.completed, todos.completed), "
    "deleted = todos.deleted OR excluded.deleted, "
    "updated_at = excluded.updated_at, updated_seq = excluded.updated_seq"
)
Key = tuple[str, str]
_MOVES = {"todo_added": (1, 0), "todo_completed": (-1, 1), "todo_reopened": (1, -1)}
_AFTER = {"todo_added": (1, 0), "todo_completed": (0, 1), "todo_reopened": (1, 0)}


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "todo_list"]
    if not mine:
        return
    changed: dict[Key, dict[str, Any]] = {}
    state: dict[Key, tuple[int, int]] = {}  # (active, completed) once known in this batch
    moves: defaultdict[Key, list[tuple[str, int, int]]] = defaultdict(list)
    unknown_deletes: dict[Key, str] = {}  # key -> minute of a delete of unknown prior state

    def step(seq: int, e: Envelope) -> None:
        data, kind = payload(e), e.event_type
        key = (e.aggregate_id, str(data["todo_id"]))
        at = e.occurred_at  # RFC 3339 text: DuckDB casts it to TIMESTAMPTZ on insert
        row = changed.setdefault(key, {"list_id": key[0], "todo_id": key[1], "deleted": False})
        row["updated_at"], row["updated_seq"] = at, seq
        if kind == "todo_added":
            row.update(text=str(data["text"]), completed=False, position=e.version, created_at=at)
        elif kind == "todo_renamed":
            row["text"] = str(data["text"])
        elif kind in ("todo_completed", "todo_reopened"):
            row["completed"] = kind == "todo_completed"
        elif kind == "todo_deleted":
            row["deleted"] = True
            if key in state:
                active, completed = state[key]
                moves[key].append((minute(e.occurred_at), -active, -completed))
            else:
                unknown_deletes[key] = minute(e.occurred_at)
            state[key] = (0, 0)
        if kind in _MOVES:
            moves[key].append((minute(e.occurred_at), *_MOVES[kind]))
            state[key] = _AFTER[kind]

    each(mine, step)
    written = merge(
        con, "todos", _COLUMNS, changed.values(), _MERGED,
        "list_id, todo_id, created_at IS NULL, completed",
    )  # fmt: skip
    orphans = [(list_id, todo_id) for list_id, todo_id, orphan, _ in written if orphan]
    if orphans:
        con.execute("DELETE FROM todos WHERE created_at IS NULL")
    for list_id, todo_id, orphan, completed in written:
        key = (list_id, todo_id)
        if not orphan and key in unknown_deletes:
            moves[key].append(
                (unknown_deletes[key], 0, -1) if completed else (unknown_deletes[key], -1, 0)
            )
    counts: defaultdict[tuple[str], list[int]] = defaultdict(lambda: [0, 0])
    for key, moved in moves.items():
        if key in orphans:
            continue
        for at_minute, active, completed in moved:
            count = counts[(at_minute,)]
            count[0] += active
            count[1] += completed
    add_counts(con, "todo_changes", ("minute",), counts, ("active_delta", "completed_delta"))


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
