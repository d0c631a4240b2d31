"""Which tables an answer depends on: what a live query is evaluated again for.

A live query (`gateway/live/hub.py`) is evaluated again only after a committed batch that
changed one of the tables its answer reads. Those are found from the parsed SELECT (the
tree `json_serialize_sql` gives, as the sandbox reads it: `projector.sql_refs`), with every
view replaced by the tables it reads, recursively. What cannot be known is `EVERY` (any
batch may change it): a query written as a Python function, or a statement that does not
parse as one plain SELECT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import duckdb

from common.app import Query
from projector.sql_refs import tables_of

EVERY = "*"  # depends on any table: evaluated again after every batch
MAX_DEPTH = 16  # views of views at most this deep; deeper counts as EVERY
_VIEWS = "SELECT lower(view_name), sql FROM duckdb_views() WHERE NOT internal"


def query_reads(con: duckdb.DuckDBPyConnection, query: Query) -> frozenset[str]:
    """The base tables a catalogue query reads, or {EVERY}."""
    if query.run is not None or not query.sql:
        return frozenset({EVERY})
    return tables_read(con, query.sql)


def tables_read(con: duckdb.DuckDBPyConnection, sql: str) -> frozenset[str]:
    """The base tables (lower case) one SELECT reads, views expanded; or {EVERY}."""
    views = {name: _body(text) for name, text in con.execute(_VIEWS).fetchall()}
    found: set[str] = set()
    pending = [(sql, 0)]
    while pending:
        text, depth = pending.pop()
        names = _refs(con, text) if depth <= MAX_DEPTH else None
        if names is None:
            return frozenset({EVERY})
        for name in names:
            if name in views:
                pending.append((views[name], depth + 1))
            else:
                found.add(name)
    return frozenset(found)


def _refs(con: duckdb.DuckDBPyConnection, sql: str) -> Iterable[str] | None:
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except (duckdb.Error, RecursionError, ValueError):
        return None
    return None if tree.get("error") else tables_of(tree)


def _body(view_sql: str) -> str:
    """The SELECT of a stored `CREATE VIEW name AS SELECT ...;` (DuckDB's own spelling)."""
    head, _, body = view_sql.partition(" AS ")
    return body.rstrip().rstrip(";") if head else view_sql
