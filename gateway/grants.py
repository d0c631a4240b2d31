"""Who is asking, and the one rule for what each read-model answer needs.

Every path that renders or returns read-model data — the `/api` read routes, CSV, SQL,
the dashboard page and its `/ui` fragments, feed snapshots — gets it from
`Backend.query`, which asks `require_read` first. So the rule lives here once: a query of
a projection shows rows about one aggregate type (or one aggregate of it, when the query
names its id), and needs the read grant of what it shows:

| projection      | a query naming an id         | any other query     |
|-----------------|------------------------------|---------------------|
| `todo_lists`    | `read:todo_list:<list_id>`   | `read:todo_list`    |
| `user_profiles` | `read:user_profile:<user_id>`| `read:user_profile` |
| `analytics`     | —                            | `read:analytics`    |
| `sql`           | —                            | `sql`               |
| anything else   | `admin` (deny by default)    |                     |

A feed's topic `<type>[:<id>]` needs `read:<type>[:<id>]` (`topic_grant`). The principal
of the current request sits in a context variable set by the front door; its default is
nobody, so a read outside a request is refused, never allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from common.errors import Unauthorized
from common.tokens import Claims

# projection → (the aggregate type its rows are about, the parameter naming one of them)
SHOWS: dict[str, tuple[str, str | None]] = {
    "todo_lists": ("todo_list", "list_id"),
    "user_profiles": ("user_profile", "user_id"),
    "analytics": ("analytics", None),
}
SQL = "sql"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: `key` names it for budgets (`sub:<subject>`, or `ip:<address>` without
    a verified token); `claims` is its verified token, if any; `auth` whether the gateway
    checks tokens at all (off: loopback, single user, everything granted)."""

    key: str
    claims: Claims | None = None
    auth: bool = True

    def may(self, scope: str) -> bool:
        return not self.auth or (self.claims is not None and self.claims.grants(scope))

    def require(self, scope: str) -> None:
        """401 without a token (sign in), 403 with one that does not grant `scope`."""
        if not self.auth:
            return
        if self.claims is None:
            raise Unauthorized(
                f"this needs a token granting {scope!r}: send `Authorization: Bearer <token>`, "
                "or sign in with POST /api/session",
                scope=scope,
            )
        self.claims.require(scope)


NOBODY = Principal("nobody")
PRINCIPAL: ContextVar[Principal] = ContextVar("principal", default=NOBODY)


def read_grant(projection: str, params: Mapping[str, Any]) -> str:
    """The scope a query of `projection` with `params` needs (the table above)."""
    if projection == SQL:
        return SQL
    shows = SHOWS.get(projection)
    if shows is None:
        return "admin"
    kind, key = shows
    ident = params.get(key) if key else None
    return f"read:{kind}:{ident}" if isinstance(ident, str) else f"read:{kind}"


def topic_grant(aggregate_type: str, aggregate_id: str | None = None) -> str:
    return f"read:{aggregate_type}" + (f":{aggregate_id}" if aggregate_id else "")


def require_read(projection: str, params: Mapping[str, Any]) -> None:
    PRINCIPAL.get().require(read_grant(projection, params))


def may_read(projection: str, params: Mapping[str, Any]) -> bool:
    return PRINCIPAL.get().may(read_grant(projection, params))
