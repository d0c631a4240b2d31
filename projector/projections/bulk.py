"""Bulk statements: a few per table and batch, fed by registered Arrow tables.

Entity tables (`todos`, `users`) have no primary key: the events say whether a row is
new. A creating event becomes a plain INSERT of the row collapsed over the batch (an
append, no index to maintain or probe); every other change becomes part of one
`UPDATE ... FROM _batch` (a hash join on the small batch); a change to a row that does
not exist updates nothing. Exactly-once comes from the checkpoint in the same
transaction, so no key is ever inserted twice. Small counter tables keep a primary key
and add with `ON CONFLICT DO UPDATE`; DuckDB keeps the *first* row when one upsert holds
a key twice, so counts arrive summed per key. Batches are registered (not scanned from
Python variables): the read model runs with external access off, which turns those off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

Key = tuple[Any, ...]
Columns = Mapping[str, pa.DataType]  # column -> Arrow type, in table order


def insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: Columns, rows: Sequence[dict[str, Any]]
) -> None:
    """Append whole rows (one per key, never in the table before)."""
    if rows:
        _run(con, _arrow(columns, rows), f"INSERT INTO {table} ({', '.join(columns)}) "
             f"SELECT {', '.join(columns)} FROM _batch")  # fmt: skip


def lookup(
    con: duckdb.DuckDBPyConnection,
    table: str,
    keys: Columns,
    wanted: Sequence[Key],
    columns: str,
) -> list[tuple[Any, ...]]:
    """The `columns` (over `t`, the table) of the rows whose `keys` equal one of `wanted`:
    one hash join of the table against the batch's keys, read before a batch is written."""
    if not wanted:
        return []
    values = zip(*wanted, strict=True)
    data = pa.table({c: pa.array(v, t) for (c, t), v in zip(keys.items(), values, strict=True)})
    join = " AND ".join(f"t.{k} = b.{k}" for k in keys)
    return _run(con, data, f"SELECT {columns} FROM {table} AS t JOIN _batch AS b ON {join}")


def update(
    con: duckdb.DuckDBPyConnection,
    table: str,
    keys: Sequence[str],
    columns: Columns,
    rows: Sequence[dict[str, Any]],
    assignments: str,
    returning: str = "",
) -> list[tuple[Any, ...]]:
    """One UPDATE of the rows whose `keys` match a partial row (None = unchanged, one per
    key); `assignments` is the SET clause over `t` (the table) and `b` (the batch).
    Returns the `returning` columns of the rows updated (none asked: empty)."""
    if not rows:
        return []
    join = " AND ".join(f"t.{k} = b.{k}" for k in keys)
    tail = f" RETURNING {returning}" if returning else ""
    sql = f"UPDATE {table} AS t SET {assignments} FROM _batch AS b WHERE {join}{tail}"
    found = _run(con, _arrow(columns, rows), sql)
    return found if returning else []


def add_counts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key_columns: Columns,
    counts: Mapping[Key, Sequence[int]],
    count_columns: Sequence[str],
) -> None:
    """Add `counts` (one tuple per key, already summed over the batch) onto `table`."""
    if not counts:
        return
    keys = zip(*counts, strict=True)
    values = zip(*counts.values(), strict=True)
    data = pa.table(
        {
            **{c: pa.array(v, t) for (c, t), v in zip(key_columns.items(), keys, strict=True)},
            **{c: pa.array(v, pa.int64()) for c, v in zip(count_columns, values, strict=True)},
        }
    )
    names = ", ".join([*key_columns, *count_columns])
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in count_columns)
    _run(con, data, f"INSERT INTO {table} ({names}) SELECT {names} FROM _batch "
         f"ON CONFLICT DO UPDATE SET {added}")  # fmt: skip


def _arrow(columns: Columns, rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in columns.items()})


def _run(con: duckdb.DuckDBPyConnection, data: pa.Table, sql: str) -> list[tuple[Any, ...]]:
    con.register("_batch", data)
    try:
        found: list[tuple[Any, ...]] = con.execute(sql).fetchall()
        return found
    finally:
        con.unregister("_batch")
