"""`todo_lists`: TodoMVC state per list (one row per todo) and todo counts over time.

A batch is written without reading first (see `bulk.py`): a todo added in the batch is
inserted as its final row, every other touched todo becomes one partial row (None =
unchanged) of a single UPDATE, which leaves a todo never added untouched. `todo_changes`
holds, per minute, how the numbers of active and completed todos moved (the
`todos_over_time` view in `analytics` sums it). The domain guarantees what a change
implies: `todo_completed` only happens to an active todo, `todo_reopened` only to a
completed one, deleted is terminal; only a delete whose todo was not touched before in
the batch needs its prior state, which the UPDATE returns (it changes only `deleted`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from common.envelope import Envelope
from projector.projection import Event, Query, each, minute, payload, rows
from projector.projections.bulk import add_counts, insert, update

name = "todo_lists"
version = 3
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
_CHANGES = {c: _COLUMNS[c] for c in ("list_id", "todo_id", "text", "completed", "deleted",
                                     "updated_at", "updated_seq")}  # fmt: skip
_SET = (
    "text = coalesce(b.text, t.text), completed = coalesce(b.completed, t.completed), "
    "deleted = t.deleted OR b.deleted, updated_at = b.updated_at, updated_seq = b.updated_seq"
)
Key = tuple[str, str]
_MOVES = {"todo_added": (1, 0), "todo_completed": (-1, 1), "todo_reopened": (1, -1)}
_AFTER = {"todo_added": (1, 0), "todo_completed": (0, 1), "todo_reopened": (1, 0)}


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "todo_list"]
    if not mine:
        return
    changed: dict[Key, dict[str, Any]] = {}
    added: set[Key] = set()
    state: dict[Key, tuple[int, int]] = {}  # (active, completed) once known in this batch
    moves: defaultdict[Key, list[tuple[str, int, int]]] = defaultdict(list)
    unknown_deletes: dict[Key, str] = {}  # key -> minute of a delete of unknown prior state

    def step(seq: int, e: Envelope) -> None:
        data, kind = payload(e), e.event_type
        key = (e.aggregate_id, str(data["todo_id"]))
        at = e.occurred_at  # RFC 3339 text: DuckDB casts it to TIMESTAMPTZ
        if kind == "todo_added":  # a todo is added once; anything before it was an orphan
            added.add(key)
            moves.pop(key, None)
            unknown_deletes.pop(key, None)
            changed[key] = {"list_id": key[0], "todo_id": key[1], "deleted": False,
                            "text": str(data["text"]), "completed": False,
                            "position": e.version, "created_at": at}  # fmt: skip
        row = changed.setdefault(key, {"list_id": key[0], "todo_id": key[1], "deleted": False})
        row["updated_at"], row["updated_seq"] = at, seq
        if kind == "todo_renamed":
            row["text"] = str(data["text"])
        elif kind in ("todo_completed", "todo_reopened"):
            row["completed"] = kind == "todo_completed"
        elif kind == "todo_deleted":
            row["deleted"] = True
            if key in state:
                active, completed = state[key]
                moves[key].append((minute(at), -active, -completed))
            else:
                unknown_deletes[key] = minute(at)
            state[key] = (0, 0)
        if kind in _MOVES:
            moves[key].append((minute(at), *_MOVES[kind]))
            state[key] = _AFTER[kind]

    each(mine, step)
    insert(con, "todos", _COLUMNS, [changed[key] for key in added])
    changes = [row for key, row in changed.items() if key not in added]
    asks = any(key not in added for key in moves) or bool(unknown_deletes)
    found = update(con, "todos", ("list_id", "todo_id"), _CHANGES, changes, _SET,
                   "list_id, todo_id, completed" if asks else "")  # fmt: skip
    existing = {(list_id, todo_id): completed for list_id, todo_id, completed in found}
    for key, at_minute in unknown_deletes.items():
        if key in existing:
            moves[key].append((at_minute, 0, -1) if existing[key] else (at_minute, -1, 0))
    counts: defaultdict[tuple[str], list[int]] = defaultdict(lambda: [0, 0])
    for key, moved in moves.items():
        if key not in added and key not in existing:
            continue  # an orphan: changes to a todo never added
        for at_minute, active, completed in moved:
            count = counts[(at_minute,)]
            count[0] += active
            count[1] += completed
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
