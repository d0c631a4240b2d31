"""Bulk statements: one SELECT for the touched keys, one upsert per table and batch.

DuckDB keeps the *first* row when an upsert batch holds the same key twice, so every
batch is collapsed to the last write per key (a dict keyed by primary key) first. Batches
travel as registered Arrow tables: the read model runs with external access off, which
also turns off DuckDB's scans of Python variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    _insert(con, table, columns, data, "OR REPLACE", "")


def add_counts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key_columns: Sequence[str],
    counts: Mapping[Key, Sequence[int]],
    count_columns: Sequence[str],
) -> None:
    """Add `counts` (one tuple per key, already summed over the batch) onto `table`."""
    if not counts:
        return
    keys = list(zip(*counts, strict=True))
    values = list(zip(*counts.values(), strict=True))
    data = pa.table(
        {
            **{c: list(v) for c, v in zip(key_columns, keys, strict=True)},
            **{c: pa.array(v, pa.int64()) for c, v in zip(count_columns, values, strict=True)},
        }
    )
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in count_columns)
    _insert(
        con, table, [*key_columns, *count_columns], data, "", f"ON CONFLICT DO UPDATE SET {added}"
    )


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    data: pa.Table,
    verb: str,
    tail: str,
) -> None:
    con.register("_batch", data)
    try:
        names = ", ".join(columns)
        con.execute(f"INSERT {verb} INTO {table} ({names}) SELECT {names} FROM _batch {tail}")
    finally:
        con.unregister("_batch")
