"""`user_profiles`: one row per registered user. A batch reads the rows of the users it
touches once, folds its events onto them with the domain's own `evolve` (a second
registration, a change to a user never registered: `Unapplicable`, as the writer refuses
them), then inserts the users new in the batch and updates the others (see `bulk.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from common.domain import AGGREGATES
from common.domain.user_profile import INITIAL, UserProfile, UserRegistered
from common.envelope import Envelope
from common.errors import NotFound
from projector.projection import Event, Query, each, rows
from projector.projections.bulk import insert, lookup, update

name = "user_profiles"
version = 4
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
    "name = b.name, email = b.email, active = b.active, "
    "updated_at = b.updated_at, updated_seq = b.updated_seq"
)
_USERS = AGGREGATES["user_profile"]


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    mine = [(seq, e) for seq, e in events if e.aggregate_type == "user_profile"]
    if not mine:
        return
    touched = sorted({(e.aggregate_id,) for _, e in mine})
    found = lookup(con, "users", {"user_id": _S}, touched,
                   "t.user_id, t.name, t.email, t.active")  # fmt: skip
    users = {
        user: UserProfile(registered=True, active=bool(active), name=name, email=email)
        for user, name, email, active in found
    }
    existing = set(users)
    changed: dict[str, dict[str, Any]] = {}

    def step(seq: int, e: Envelope) -> None:
        event = _USERS.from_payload(e.event_type, e.schema, e.payload)
        user = e.aggregate_id
        state = users[user] = _USERS.evolve(users.get(user, INITIAL), event)  # ImpossibleEvent
        row = changed.setdefault(user, {"user_id": user})
        if isinstance(event, UserRegistered):
            row["registered_at"] = e.occurred_at
        row.update(name=state.name, email=state.email, active=state.active,
                   updated_at=e.occurred_at, updated_seq=seq)  # fmt: skip

    each(mine, step)
    insert(con, "users", _COLUMNS, [row for u, row in changed.items() if u not in existing])
    update(con, "users", ("user_id",), _CHANGES,
           [row for u, row in changed.items() if u in existing], _SET)  # fmt: skip


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
