"""A snapshot: a consistent copy of the read models in a new DuckDB file any client opens.

It is read through the replica's own connection, never by opening the live file again: in
POSIX, closing any descriptor of a file drops every lock the process holds on it, so a
second handle would leave the live file open to another process's writes. One read-only
transaction sees every table and the checkpoint at the same commit while batches go on
being applied, and the new file is written by a database of its own in a storage version
older DuckDB releases read (`v1.5.0` by default: the DuckDB 1.5 CLI that pip serves reads
storage versions up to 68, which is `v1.5.0`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from common.errors import Invalid

ROWS_PER_BATCH = 50_000  # rows held in memory at once while copying a table


def write(con: duckdb.DuckDBPyConnection, target: Path, storage_version: str) -> int:
    """Copy `con`'s tables and views to `target` (atomically renamed into place); returns
    the checkpoint sequence the copy holds. A bad `storage_version` is a 422."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    for stale in (partial, partial.with_name(partial.name + ".wal")):
        stale.unlink(missing_ok=True)
    try:
        out = duckdb.connect(
            str(partial),
            config={"storage_compatibility_version": storage_version, "threads": "1"},
        )
    except duckdb.Error as exc:
        raise Invalid(
            f"cannot write a snapshot in storage version {storage_version!r} ({exc}); "
            "give a DuckDB release such as v1.5.0",
            field="storage_version",
        ) from None
    reader = con.cursor()
    try:
        reader.execute("BEGIN TRANSACTION READ ONLY")
        sequence = _copy(reader, out)
        out.execute("CHECKPOINT")
    finally:
        reader.close()
        out.close()
    partial.replace(target)
    return sequence


def _copy(reader: duckdb.DuckDBPyConnection, out: duckdb.DuckDBPyConnection) -> int:
    tables = reader.execute(
        "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary ORDER BY table_oid"
    ).fetchall()
    for name, ddl in tables:
        out.execute(ddl)
        quoted = '"' + name.replace('"', '""') + '"'
        rows = reader.sql(f"SELECT * FROM {quoted}").to_arrow_reader(ROWS_PER_BATCH)
        out.register("_rows", rows)
        out.execute(f"INSERT INTO {quoted} SELECT * FROM _rows")
        out.unregister("_rows")
    views = reader.execute(
        "SELECT sql FROM duckdb_views() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT internal AND NOT temporary ORDER BY view_oid"
    ).fetchall()
    for (ddl,) in views:
        out.execute(ddl)
    found = reader.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchall()
    return int(found[0][0]) if found else 0
