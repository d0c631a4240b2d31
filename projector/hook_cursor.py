"""The cursor a projection's Python hook (`Projection.apply` as a function) writes through.

DuckDB's connection inside the batch's transaction, each statement checked before it runs
by its parsed type (`duckdb.extract_statements`) and the tables it writes: a hook may
SELECT, and INSERT, UPDATE, DELETE or MERGE INTO its projection's own `tables`. Anything
else (BEGIN/COMMIT/ROLLBACK, CHECKPOINT, DDL, SET/PRAGMA, ATTACH, LOAD, another
projection's tables, the engine's private tables even to read them, a function the ad-hoc
SQL review refuses such as `query_table()`) raises `PermissionError` naming why, by the
same rules as the start-up check of SQL apply statements (`projector.app_sql`): that
batch's events become dead letters of that projection only, as any exception of a hook.

A hook is the app's own Python, run in the projector's process: the guard stops mistakes
through the cursor, not code that imports DuckDB or reaches around it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import duckdb

from projector.sql_words import Parsed, parse, private_named, refused_call, targets

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
        """Run `sql` with `parameters` (DuckDB's: a list for `?`, a dict for `$name`), this
        cursor again to fetch from; `PermissionError` naming why a statement may not run,
        DuckDB's error for one that fails."""
        self._check(sql)
        self._con.execute(sql, parameters)
        return self

    def executemany(self, sql: str, parameters: Any = None) -> HookCursor:
        """`execute` once per item of `parameters` (a list of lists or dicts)."""
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
        statement = _parsed(sql)
        where = f"projection {self._projection}'s hook"
        refused = [parsed.name for parsed in statement.kinds if parsed.type not in _ALLOWED]
        if refused or not statement.kinds:
            raise PermissionError(
                f"{where} ran {', '.join(refused) or 'nothing'}; a hook may SELECT, and "
                "INSERT, UPDATE, DELETE or MERGE INTO its own tables"
            )
        foreign = sorted(set(statement.written) - self._tables)
        if foreign:
            raise PermissionError(
                f"{where} wrote {foreign[0]}, not one of its tables "
                f"({', '.join(sorted(self._tables)) or 'none'})"
            )
        if statement.private:
            raise PermissionError(
                f"{where} names {statement.private}, Ironstar's own; a hook reads and writes "
                "its projection's tables"
            )
        if statement.refused_call:
            raise PermissionError(f"{where} calls {statement.refused_call}")


class _Statement(NamedTuple):
    """What a hook's SQL text is, judged once: its statements (name as written, DuckDB's
    type), the private table and refused function it names (or None), the tables it
    writes."""

    kinds: tuple[Parsed, ...]
    private: str | None
    refused_call: str | None
    written: tuple[str, ...]


@lru_cache(maxsize=256)
def _parsed(sql: str) -> _Statement:
    """`sql` judged; a hook runs the same text per batch, so it is judged once."""
    try:
        said = parse(sql)
    except duckdb.Error as exc:
        raise PermissionError(f"a hook's SQL does not parse: {exc}") from None
    return _Statement(tuple(said), private_named(sql), refused_call(sql), tuple(targets(sql)))
