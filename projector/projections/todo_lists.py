"""`todo_lists`: TodoMVC state per list (one row per todo) and todo counts over time.

`todo_changes` holds, per minute, how the number of active and completed todos moved;
the `todos_over_time` view (in `analytics`) sums it into counts at the end of each minute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from common.envelope import Envelope
from projector.projection import Event, Query, each, minute, payload, rows
from projector.projections.upsert import add_counts, collapse_and_upsert, fetch_existing

name = "todo_lists"
version = 2
tables = ("todos", "todo_changes")
ddl = (
    """CREATE TABLE IF NOT EXISTS todos (
        list_id VARCHAR NOT NULL,
        todo_id VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        completed BOOLEAN NOT NULL,
        deleted BOOLEAN NOT NULL,
        position BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
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


def _state(row: dict[str, Any] | None) -> tuple[int, int]:
    """(active, completed) contribution of one todo row."""
    if row is None or row["deleted"]:
        return 0, 0
    return (0, 1) if row["completed"] else (1, 0)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "todo_list"]
    if not mine:
        return
    # Todos added in this batch are new: only the others are read back.
    keys = {(e.aggregate_id, e.payload.get("todo_id")) for _, e in mine}
    keys -= {
        (e.aggregate_id, e.payload.get("todo_id")) for _, e in mine if e.event_type == "todo_added"
    }
    current = fetch_existing(con, "todos", ("list_id", "todo_id"), keys)
    changes: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])

    def step(seq: int, e: Envelope) -> None:
        data = payload(e)
        key = (e.aggregate_id, data["todo_id"])
        row = current.get(key)
        before = _state(row)
        at = datetime.fromisoformat(e.occurred_at)
        if e.event_type == "todo_added":
            row = current[key] = {
                "list_id": key[0], "todo_id": key[1], "text": str(data["text"]),
                "completed": False, "deleted": False, "position": e.version,
                "created_at": at, "updated_at": at, "updated_seq": seq,
            }  # fmt: skip
        elif row is None:
            return  # a change to a todo this model never saw added: nothing to change
        elif e.event_type == "todo_renamed":
            row["text"] = str(data["text"])
        elif e.event_type in ("todo_completed", "todo_reopened"):
            row["completed"] = e.event_type == "todo_completed"
        elif e.event_type == "todo_deleted":
            row["deleted"] = True
        else:
            return
        row["updated_at"], row["updated_seq"] = at, seq
        after, delta = _state(row), changes[minute(e.occurred_at)]
        delta[0] += after[0] - before[0]
        delta[1] += after[1] - before[1]

    each(mine, step)
    collapse_and_upsert(con, "todos", _COLUMNS, current.values())
    add_counts(
        con,
        "todo_changes",
        ("minute",),
        {(m,): tuple(d) for m, d in changes.items()},
        ("active_delta", "completed_delta"),
    )


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
