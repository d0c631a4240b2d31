"""The cursor a projection's Python hook (`Projection.apply` as a function) writes through.

DuckDB's connection inside the batch's transaction, each statement checked before it runs
by its parsed type (`duckdb.extract_statements`) and the tables it writes: a hook may
SELECT, and INSERT, UPDATE, DELETE or MERGE INTO its projection's own `tables`. Anything
else (BEGIN/COMMIT/ROLLBACK, CHECKPOINT, DDL, SET/PRAGMA, ATTACH, LOAD, another
projection's or the engine's tables) raises `PermissionError` naming why: that batch's
events become dead letters of that projection only, as any exception of a hook.

A hook is the app's own Python, run in the projector's process: the guard stops mistakes
through the cursor, not code that imports DuckDB or reaches around it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import duckdb

from projector.sql_words import targets

_ALLOWED = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE_INTO"})
_RESULTS = frozenset({"fetchall", "fetchone", "fetchmany", "fetchdf", "fetchnumpy",
                      "fetch_arrow_table", "df", "description", "rowcount"})  # fmt: skip


class HookCursor:
    """`execute`/`executemany` (returning this cursor) and the fetch methods of the last
    result; nothing else of the connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, projection: str, tables: tuple[str, ...]):
        self._con = con
        self._projection = projection
        self._tables = frozenset(table.lower() for table in tables)

    def execute(self, sql: str, parameters: Any = None) -> HookCursor:
        self._check(sql)
        self._con.execute(sql, parameters)
        return self

    def executemany(self, sql: str, parameters: Any = None) -> HookCursor:
        self._check(sql)
        self._con.executemany(sql, parameters)
        return self

    def __getattr__(self, name: str) -> Any:
        if name in _RESULTS:
            return getattr(self._con, name)
        raise AttributeError(
            f"a hook's cursor offers execute, executemany and fetch*, not {name!r}"
        )

    def _check(self, sql: str) -> None:
        kinds, written = _parsed(sql)
        where = f"projection {self._projection}'s hook"
        refused = sorted(set(kinds) - _ALLOWED)
        if refused or not kinds:
            raise PermissionError(
                f"{where} ran {', '.join(refused) or 'nothing'}; a hook may SELECT, and "
                "INSERT, UPDATE, DELETE or MERGE INTO its own tables"
            )
        foreign = sorted(set(written) - self._tables)
        if foreign:
            raise PermissionError(
                f"{where} wrote {foreign[0]}, not one of its tables "
                f"({', '.join(sorted(self._tables)) or 'none'})"
            )


@lru_cache(maxsize=256)
def _parsed(sql: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(statement types, tables written) of `sql`; a hook runs the same text per batch."""
    try:
        kinds = tuple(parsed.type.name for parsed in duckdb.extract_statements(sql))
    except duckdb.Error as exc:
        raise PermissionError(f"a hook's SQL does not parse: {exc}") from None
    return kinds, tuple(targets(sql))
