"""Bulk statements: one upsert per table and batch, fed by a registered Arrow table.

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


def merge(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    changes: Iterable[dict[str, Any]],
    merged: str,
    returning: str,
) -> list[tuple[Any, ...]]:
    """Upsert partial rows (None = unchanged) with one statement, without reading first:
    `merged` is the ON CONFLICT DO UPDATE SET clause; returns the `returning` columns of
    every row written (the ART index finds conflicts; nothing scans the table)."""
    batch = list(changes)
    if not batch:
        return []
    data = pa.table({c: [row.get(c) for row in batch] for c in columns})
    con.register("_batch", data)
    try:
        names = ", ".join(columns)
        found: list[tuple[Any, ...]] = con.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM _batch "
            f"ON CONFLICT DO UPDATE SET {merged} RETURNING {returning}"
        ).fetchall()
    finally:
        con.unregister("_batch")
    return found


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
