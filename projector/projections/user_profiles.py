"""`user_profiles`: one row per registered user, merged per batch without reading first
(a change to a user never registered leaves no row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from common.envelope import Envelope
from common.errors import NotFound
from projector.projection import Event, Query, each, payload, rows
from projector.projections.upsert import merge

name = "user_profiles"
version = 2
tables = ("users",)
ddl = (
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY,
        name VARCHAR,
        email VARCHAR,
        active BOOLEAN,
        registered_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        updated_seq BIGINT NOT NULL
    )""",
)
_COLUMNS = ("user_id", "name", "email", "active", "registered_at", "updated_at", "updated_seq")
_MERGED = (
    "name = coalesce(excluded.name, users.name), email = coalesce(excluded.email, users.email), "
    "active = coalesce(excluded.active, users.active), "
    "updated_at = excluded.updated_at, updated_seq = excluded.updated_seq"
)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "user_profile"]
    if not mine:
        return
    changed: dict[str, dict[str, Any]] = {}

    def step(seq: int, e: Envelope) -> None:
        data, at = payload(e), e.occurred_at  # RFC 3339 text, cast by DuckDB
        row = changed.setdefault(e.aggregate_id, {"user_id": e.aggregate_id})
        row["updated_at"], row["updated_seq"] = at, seq
        if e.event_type == "user_registered":
            row.update(
                name=str(data["name"]), email=str(data["email"]), active=True, registered_at=at
            )
        elif e.event_type == "profile_updated":
            row.update({k: str(v) for k, v in data.items() if k in ("name", "email") and v})
        elif e.event_type == "user_deactivated":
            row["active"] = False

    each(mine, step)
    written = merge(con, "users", _COLUMNS, changed.values(), _MERGED, "registered_at IS NULL")
    if any(orphan for (orphan,) in written):
        con.execute("DELETE FROM users WHERE registered_at IS NULL")


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
