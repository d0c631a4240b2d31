"""`user_profiles`: one row per registered user."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from common.envelope import Envelope
from common.errors import NotFound
from projector.projection import Event, Query, each, payload, rows
from projector.projections.upsert import collapse_and_upsert, fetch_existing

name = "user_profiles"
version = 1
tables = ("users",)
ddl = (
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        email VARCHAR NOT NULL,
        active BOOLEAN NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        updated_seq BIGINT NOT NULL
    )""",
)
_COLUMNS = ("user_id", "name", "email", "active", "registered_at", "updated_at", "updated_seq")


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "user_profile"]
    if not mine:
        return
    current = fetch_existing(con, "users", ("user_id",), {(e.aggregate_id,) for _, e in mine})

    def step(seq: int, e: Envelope) -> None:
        key, at, data = (e.aggregate_id,), datetime.fromisoformat(e.occurred_at), payload(e)
        if e.event_type == "user_registered":
            current[key] = {
                "user_id": e.aggregate_id, "name": str(data["name"]),
                "email": str(data["email"]), "active": True,
                "registered_at": at, "updated_at": at, "updated_seq": seq,
            }  # fmt: skip
            return
        row = current.get(key)
        if row is None:
            return
        if e.event_type == "profile_updated":
            row.update({k: str(v) for k, v in data.items() if k in ("name", "email") and v})
        elif e.event_type == "user_deactivated":
            row["active"] = False
        row.update(updated_at=at, updated_seq=seq)

    each(mine, step)
    collapse_and_upsert(con, "users", _COLUMNS, current.values())


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
