"""The read model's DuckDB file: how it is opened, and Ironstar's own tables in it.

The database is opened locked down (`LOCKED_DOWN`): no file or network access, no
extension loading, and its configuration frozen, so the ad-hoc SQL that queries run over
it cannot reach outside it. The projector needs none of that: batches arrive as
registered Arrow tables. Beside the projections' tables the file holds the engine's own
(`META_DDL`): the one `checkpoint` row (sequence and last command id), each projection's
`projection_versions` row, and `dead_letters`; files of older layouts are migrated when
opened (`create_engine_tables`). The class that owns the file is `projector.readmodel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from common.app import Projection

LOCKED_DOWN = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "allow_community_extensions": "false",
    "python_enable_replacements": "false",  # no query reads a Python variable by its name
    # One budget for the projector and its queries: a query that needs more fails alone.
    "memory_limit": "2GB",
    "max_temp_directory_size": "4GB",
    "lock_configuration": "true",
    # A checkpoint rewrites every row group an UPDATE touched since the last one, and batches
    # touch rows all over a table: at the default 16 MB of WAL the commits' checkpoints
    # cost O(table) every few batches, a rebuild's time growing with the square of the
    # history (3.1 vs 0.5 µs per event over the last 200,000 of 1M, docs/benchmarks.md).
    "checkpoint_threshold": "256MB",
    # One thread: on a small machine the writer competes with the NATS client and server
    # for cores, and DuckDB's parallel operators cost more than they gain on 1,000 rows.
    "threads": "1",
}

META_DDL = (
    """CREATE TABLE IF NOT EXISTS checkpoint (
        id INTEGER PRIMARY KEY, sequence BIGINT NOT NULL, command_id VARCHAR NOT NULL)""",
    # Files of the walking skeleton have no command_id: add it (their projections rebuild).
    "ALTER TABLE checkpoint ADD COLUMN IF NOT EXISTS command_id VARCHAR DEFAULT ''",
    "CREATE TABLE IF NOT EXISTS projection_versions (name VARCHAR PRIMARY KEY, version INTEGER)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        sequence BIGINT NOT NULL, subject VARCHAR, error VARCHAR, data BLOB,
        recorded_at TIMESTAMPTZ DEFAULT current_timestamp,
        projection VARCHAR NOT NULL DEFAULT '*', PRIMARY KEY (sequence, projection))""",
)
# Files before per-projection dead letters keyed them by sequence alone: copy them over.
_DEAD_LETTERS_V1 = (
    "ALTER TABLE dead_letters RENAME TO dead_letters_v1",
    META_DDL[-1],
    """INSERT INTO dead_letters (sequence, subject, error, data, recorded_at)
       SELECT sequence, subject, error, data, recorded_at FROM dead_letters_v1""",
    "DROP TABLE dead_letters_v1",
)


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """The file at `path` opened `LOCKED_DOWN` (created, with its folder, if missing;
    `:memory:` for none). Raises `duckdb.IOException` when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), config=dict(LOCKED_DOWN))


def create_engine_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the engine's tables and the checkpoint row (sequence 0) where missing, and
    migrate an older layout's; inside the caller's transaction."""
    for statement in META_DDL:
        con.execute(statement)
    columns = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'dead_letters'"
    if ("projection",) not in con.execute(columns).fetchall():
        for statement in _DEAD_LETTERS_V1:
            con.execute(statement)
    con.execute("INSERT OR IGNORE INTO checkpoint VALUES (1, 0, '')")


def checkpoint_of(cursor: duckdb.DuckDBPyConnection) -> int:
    """The checkpoint as the cursor's transaction sees it."""
    return int(cursor.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchall()[0][0])


def last_command(con: duckdb.DuckDBPyConnection) -> str:
    """The command id of the last event applied ('' before any): the staged `new_command`
    column compares a batch's first event with it."""
    found = con.execute("SELECT command_id FROM checkpoint WHERE id = 1").fetchall()
    return str(found[0][0])


def stored_versions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """{projection name: the version its tables in this file were built by}."""
    return dict(con.execute("SELECT name, version FROM projection_versions").fetchall())


def set_version(con: duckdb.DuckDBPyConnection, projection: Projection) -> None:
    """Record that `projection`'s tables in this file are of its current version."""
    con.execute(
        "INSERT OR REPLACE INTO projection_versions VALUES (?, ?)",
        [projection.name, projection.version],
    )


def record_dead_letters(con: duckdb.DuckDBPyConnection, letters: Sequence[Sequence[Any]]) -> None:
    """Insert dead letters `(sequence, subject, error, data, projection)`; one already there
    (same sequence and projection) stays as it is."""
    if letters:
        con.executemany(
            "INSERT OR IGNORE INTO dead_letters (sequence, subject, error, data, projection) "
            "VALUES (?, ?, ?, ?, ?)",
            [list(letter) for letter in letters],
        )
