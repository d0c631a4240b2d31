"""Bulk read-modify-write helpers: one SELECT for the touched keys, one upsert for the batch.

DuckDB keeps the *first* row when an upsert batch holds the same key twice, so every
batch is collapsed to the last write per key (here: a dict keyed by primary key) first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

Key = tuple[Any, ...]


def fetch_existing(
    con: duckdb.DuckDBPyConnection, table: str, key_columns: Sequence[str], keys: Iterable[Key]
) -> dict[Key, dict[str, Any]]:
    """The current rows of `table` for `keys`, keyed by primary key."""
    columns = list(zip(*keys, strict=True))
    if not columns:
        return {}
    wanted = pa.table(
        {name: list(values) for name, values in zip(key_columns, columns, strict=True)}
    )
    con.register("_wanted", wanted)
    try:
        join = " AND ".join(f"t.{c} = w.{c}" for c in key_columns)
        cursor = con.execute(f"SELECT t.* FROM {table} t JOIN _wanted w ON {join}")
        names = [d[0] for d in cursor.description or ()]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.unregister("_wanted")
    return {tuple(row[c] for c in key_columns): row for row in found}


def collapse_and_upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    latest: Iterable[dict[str, Any]],
) -> None:
    """Write each row (already the last write of its key) with one INSERT OR REPLACE."""
    batch = list(latest)
    if not batch:
        return
    data = pa.table({c: [row[c] for row in batch] for c in columns})
    con.register("_batch", data)
    try:
        names = ", ".join(columns)
        con.execute(f"INSERT OR REPLACE INTO {table} ({names}) SELECT {names} FROM _batch")
    finally:
        con.unregister("_batch")
