"""Read-only ad-hoc SQL over the read models.

Two fences. The database is opened with external access, extension loading and
configuration changes locked (`readmodel.LOCKED_DOWN`), so no statement can reach a file,
the network or a setting. In front of that, only a single SELECT (or WITH … SELECT)
statement is accepted: no ATTACH, COPY, EXPORT, INSTALL, LOAD, SET, PRAGMA, CALL or
writes. The query runs on its own cursor, is interrupted after a time limit and returns
at most a row limit. Every refusal is a 4xx that says why; none disturbs the projector.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from common.errors import BadRequest, Invalid

_REFUSED = {
    "ATTACH": "attaching databases is not allowed",
    "DETACH": "detaching databases is not allowed",
    "COPY": "COPY reads or writes files; it is not allowed",
    "EXPORT": "EXPORT writes files; it is not allowed",
    "LOAD": "INSTALL and LOAD of extensions are not allowed",
    "SET": "settings cannot be changed",
    "VARIABLE_SET": "settings and variables cannot be changed",
    "PRAGMA": "PRAGMA is not allowed; use SELECT over duckdb_tables() and friends",
    "CALL": "CALL is not allowed; use SELECT * FROM <table function>",
}


def check(sql: str) -> None:
    """Refuse anything but one read-only SELECT, saying why."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise Invalid(f"the SQL does not parse: {_first_line(exc)}", field="sql") from None
    if len(statements) != 1:
        raise Invalid(
            f"send exactly one statement, got {len(statements)}; split it into several requests",
            field="sql",
        )
    kind = statements[0].type.name
    if kind != "SELECT":
        reason = _REFUSED.get(kind, "the read models are read-only")
        raise Invalid(
            f"only a single read-only SELECT (or WITH … SELECT) is allowed, got {kind}: {reason}",
            field="sql",
            statement=kind,
        )


def run(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, max_rows: int
) -> dict[str, Any]:
    check(sql)
    cursor = con.cursor()
    timer = threading.Timer(timeout_s, cursor.interrupt)
    timer.start()
    try:
        result = cursor.execute(sql)
        columns = [d[0] for d in result.description or ()]
        fetched = result.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise BadRequest(
            f"the query ran longer than the {timeout_s:g} s limit and was stopped; "
            "narrow it (WHERE, LIMIT) or aggregate first",
            field="sql",
            limit="time",
        ) from None
    except duckdb.PermissionException as exc:
        raise BadRequest(
            "file, network and extension access is disabled for ad-hoc SQL "
            f"({_first_line(exc)}); query the read-model tables instead",
            field="sql",
        ) from None
    except duckdb.Error as exc:
        raise BadRequest(f"the query failed: {_first_line(exc)}", field="sql") from None
    finally:
        timer.cancel()
        cursor.close()
    return {
        "columns": columns,
        "rows": [list(row) for row in fetched[:max_rows]],
        "truncated": len(fetched) > max_rows,
        "max_rows": max_rows,
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300]
