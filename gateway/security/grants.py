"""Who is asking, and the one rule for what each read-model answer needs.

Every path that renders or returns read-model data — the `/api` read routes, CSV, SQL,
the dashboard page and its `/ui` fragments, feed snapshots — gets it from
`Backend.query`, which asks `require_read` first. So the rule lives here once: a query of
a projection of the app's catalogue needs `read:<grant>` (its `Projection.grant`, default
its name), and a query keyed by an aggregate id (`Query.key`) asked for one id needs only
`read:<grant>:<id>`. The example's:

| projection      | a query naming an id         | any other query     |
|-----------------|------------------------------|---------------------|
| `todo_lists`    | `read:todo_list:<list_id>`   | `read:todo_list`    |
| `user_profiles` | `read:user_profile:<user_id>`| `read:user_profile` |
| `analytics`     | —                            | `read:analytics`    |
| `stream` (built in) | —                        | `read:stream`       |
| `sql`           | —                            | `sql`               |
| anything else   | `admin` (deny by default)    |                     |

A feed's topic `<type>[:<id>]` needs `read:<type>[:<id>]` (`topic_grant`). The principal
of the current request sits in a context variable set by the front door; its default is
nobody, so a read outside a request is refused, never allowed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from common import catalogue
from common.errors import Unauthorized
from common.tokens import Claims

SQL = "sql"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: `key` names it for budgets (`sub:<subject>`, or `ip:<address>` without
    a verified token); `claims` is its verified token, if any; `auth` whether the gateway
    checks tokens at all (off: loopback, single user, everything granted)."""

    key: str
    claims: Claims | None = None
    auth: bool = True

    def feed_ends(self) -> float | None:
        """When a feed of this caller ends: its token's `exp` (seconds since 1970; None: no
        token). Raises Unauthorized (401) for a token already past it: accepted within the
        clock-skew leeway, its feed would end at once and an EventSource reconnect in a loop
        (verify5)."""
        if self.claims is None:
            return None
        if self.claims.expires <= time.time():
            raise Unauthorized("the token expired; sign in again")
        return float(self.claims.expires)

    def may(self, scope: str) -> bool:
        """Whether this caller holds `scope` (always, with auth off)."""
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


def read_grant(projection: str, params: Mapping[str, Any], query: str | None = None) -> str:
    """The scope a query of `projection` with `params` needs (the rule above); without the
    query's name, any key parameter of the projection's queries names the id."""
    if projection == SQL:
        return SQL
    found = catalogue.current().projections.get(projection)
    if found is None:
        return "admin"
    one = found.queries.get(query) if query is not None else None
    chosen = [one] if one is not None else list(found.queries.values())
    for key in {q.key for q in chosen if q.key}:
        ident = params.get(key)
        if isinstance(ident, str):
            return f"{found.scope}:{ident}"
    return found.scope


def topic_grant(aggregate_type: str, aggregate_id: str | None = None) -> str:
    """The scope a feed topic needs: `read:<aggregate_type>`, or
    `read:<aggregate_type>:<aggregate_id>` for one aggregate."""
    return f"read:{aggregate_type}" + (f":{aggregate_id}" if aggregate_id else "")


def require_read(projection: str, params: Mapping[str, Any], query: str | None = None) -> None:
    """Check that the current principal may see this query's answer (`read_grant`): 401 without a
    token, 403 with one that does not grant it."""
    PRINCIPAL.get().require(read_grant(projection, params, query))


def may_read(projection: str, params: Mapping[str, Any]) -> bool:
    """Whether the current principal may see an answer of `projection` with `params` (`read_grant`):
    the dashboard leaves out what it may not."""
    return PRINCIPAL.get().may(read_grant(projection, params))
