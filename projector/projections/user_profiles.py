"""`user_profiles`: one row per registered user, written per batch without reading first
(see `bulk.py`): a user registered in the batch is inserted as its final row, changes to
other users are one UPDATE, which leaves a user never registered without a row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from common.envelope import Envelope
from common.errors import NotFound
from projector.projection import Event, Query, each, payload, rows
from projector.projections.bulk import insert, update

name = "user_profiles"
version = 3
tables = ("users",)
ddl = (
    # No primary key: rows are appended when registered and updated by a join (bulk.py).
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR NOT NULL,
        name VARCHAR,
        email VARCHAR,
        active BOOLEAN,
        registered_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        updated_seq BIGINT NOT NULL
    )""",
)
_S = pa.string()  # timestamps travel as RFC 3339 text
_COLUMNS = {
    "user_id": _S, "name": _S, "email": _S, "active": pa.bool_(),
    "registered_at": _S, "updated_at": _S, "updated_seq": pa.int64(),
}  # fmt: skip
_CHANGES = {c: t for c, t in _COLUMNS.items() if c != "registered_at"}
_SET = (
    "name = coalesce(b.name, t.name), email = coalesce(b.email, t.email), "
    "active = coalesce(b.active, t.active), "
    "updated_at = b.updated_at, updated_seq = b.updated_seq"
)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "user_profile"]
    if not mine:
        return
    changed: dict[str, dict[str, Any]] = {}
    registered: set[str] = set()

    def step(seq: int, e: Envelope) -> None:
        data, at = payload(e), e.occurred_at  # RFC 3339 text, cast by DuckDB
        if e.event_type == "user_registered":  # once per user; anything before: an orphan
            registered.add(e.aggregate_id)
            changed[e.aggregate_id] = {"name": str(data["name"]), "email": str(data["email"]),
                                       "active": True, "registered_at": at}  # fmt: skip
        row = changed.setdefault(e.aggregate_id, {})
        row["user_id"], row["updated_at"], row["updated_seq"] = e.aggregate_id, at, seq
        if e.event_type == "profile_updated":
            row.update({k: str(v) for k, v in data.items() if k in ("name", "email") and v})
        elif e.event_type == "user_deactivated":
            row["active"] = False

    each(mine, step)
    insert(con, "users", _COLUMNS, [changed[user] for user in registered])
    changes = [row for user, row in changed.items() if user not in registered]
    update(con, "users", ("user_id",), _CHANGES, changes, _SET)


def get_user(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, Any]:
    found = rows(
        con,
        "SELECT user_id, name, email, active, registered_at, updated_seq FROM users "
        "WHERE user_id = ?",
        [params["user_id"]],
    )
    if not found:
        raise NotFound(f"user {params['user_id']!r} is not registered", field="user_id")
    return found[0]


def list_users(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
    return rows(
        con,
        "SELECT user_id, name, email, active FROM users ORDER BY registered_at DESC LIMIT 100",
    )


queries: dict[str, Query] = {"get": get_user, "list": list_users}
