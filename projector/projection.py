"""The engine side of a projection (`common.app.Projection`): apply a batch, answer queries.

A batch is staged once (`projector/staging.py`) and every projection applies it inside
the transaction the read model opens: SQL projections run their statements over `batch`,
Python hooks get the events. Queries run on their own cursor: a `Query`'s SQL with its
typed parameters bound by name, or its Python function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec

from common.app import Batch, Projection, Query, Unapplicable
from common.builtin import VERSIONS_NAME
from common.errors import NotFound
from projector.staging import Checker, Event, stage, unstage
from projector.versions import Versions

__all__ = ["Event", "Unapplicable", "answer", "apply"]
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def apply(
    con: duckdb.DuckDBPyConnection,
    checker: Checker,
    versions: Versions,
    projections: Sequence[Projection],
    events: Sequence[Event],
    preceding: str,
) -> None:
    """Apply `events` (in stream order, none applied before) to `projections`; the caller
    holds the transaction. Raises `Unapplicable` naming an event that cannot be applied."""
    if not events:
        return
    typed = stage(con, checker, events, preceding)  # also checks every payload
    try:
        for projection in projections:
            if projection.name == VERSIONS_NAME:  # the engine's: order and evolve
                versions.fold(con, events, typed)
            elif isinstance(projection.apply, tuple):
                for statement in projection.apply:
                    con.execute(statement)
            else:  # a hook raises Unapplicable(sequence, why) for an event it cannot read
                projection.apply(con, Batch(events, preceding))
    finally:
        unstage(con)


def answer(cursor: duckdb.DuckDBPyConnection, query: Query, params: Any) -> Any:
    """The answer of `query` with its typed `params` (a Struct), as plain builtins."""
    if query.run is not None:
        return query.run(cursor, params)
    values = msgspec.structs.asdict(params)
    used = {name: values[name] for name in _PARAM.findall(query.sql) if name in values}
    result = cursor.execute(query.sql, used)
    names = [d[0] for d in result.description or ()]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    if not query.one:
        return rows
    if not rows:
        raise NotFound(query.missing.format(**values), field=query.key)
    return rows[0]
