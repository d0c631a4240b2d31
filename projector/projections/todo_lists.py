"""`todo_lists`: TodoMVC state per list, one row per todo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import duckdb

from common.envelope import Envelope
from projector.projection import Query, rows
from projector.projections.upsert import collapse_and_upsert, fetch_existing

name = "todo_lists"
version = 1
tables = ("todos",)
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
)
_COLUMNS = (
    "list_id", "todo_id", "text", "completed", "deleted",
    "position", "created_at", "updated_at", "updated_seq",
)  # fmt: skip
_CHANGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "todo_renamed": lambda p: {"text": p["text"]},
    "todo_completed": lambda p: {"completed": True},
    "todo_reopened": lambda p: {"completed": False},
    "todo_deleted": lambda p: {"deleted": True},
}


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[tuple[int, Envelope]]) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "todo_list"]
    if not mine:
        return
    keys = {(e.aggregate_id, e.payload["todo_id"]) for _, e in mine}
    current = fetch_existing(con, "todos", ("list_id", "todo_id"), keys)
    for seq, e in mine:
        key, at = (e.aggregate_id, e.payload["todo_id"]), datetime.fromisoformat(e.occurred_at)
        if e.event_type == "todo_added":
            current[key] = {
                "list_id": key[0], "todo_id": key[1], "text": e.payload["text"],
                "completed": False, "deleted": False, "position": e.version,
                "created_at": at, "updated_at": at, "updated_seq": seq,
            }  # fmt: skip
        elif key in current and e.event_type in _CHANGES:
            current[key].update(_CHANGES[e.event_type](e.payload))
            current[key].update(updated_at=at, updated_seq=seq)
    collapse_and_upsert(con, "todos", _COLUMNS, current.values())


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
