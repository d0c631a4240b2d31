"""Read-only ad-hoc SQL over the read models.

The database itself is opened with external access, extensions and configuration changes
locked (see `readmodel.LOCKED_DOWN`); on top of that only a single SELECT statement is
accepted, it runs on its own cursor, is interrupted after a time limit and returns at
most a row limit.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from common.errors import BadRequest, Invalid, Timeout


def run(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, max_rows: int
) -> dict[str, Any]:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise Invalid(f"the SQL does not parse: {exc}", field="sql") from None
    if len(statements) != 1:
        raise Invalid(f"send exactly one statement, got {len(statements)}", field="sql")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise Invalid(
            f"only read-only SELECT queries are allowed, got {statements[0].type.name}",
            field="sql",
        )
    cursor = con.cursor()
    timer = threading.Timer(timeout_s, cursor.interrupt)
    timer.start()
    try:
        result = cursor.execute(sql)
        columns = [d[0] for d in result.description or ()]
        fetched = result.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise Timeout(
            f"the query ran longer than {timeout_s:g} s and was stopped; narrow it"
        ) from None
    except duckdb.Error as exc:
        raise BadRequest(f"the query failed: {exc}", field="sql") from None
    finally:
        timer.cancel()
        cursor.close()
    return {
        "columns": columns,
        "rows": [list(row) for row in fetched[:max_rows]],
        "truncated": len(fetched) > max_rows,
    }
