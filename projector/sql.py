"""Read-only ad-hoc SQL over the read models, read-only by construction.

Fences, each holding on its own (docs/security.md lists what each one stops):

1. The database is opened locked down (`readmodel_file.LOCKED_DOWN`): no file or network
   access, no extension loading, no replacement scans of Python variables, and its
   configuration frozen, so no statement reaches a file, the network or a setting.
2. The query runs on a fresh cursor inside `BEGIN TRANSACTION READ ONLY`, which is always
   rolled back: DuckDB refuses every write to the read models in such a transaction, in
   whatever shape it comes (`WITH x AS (DELETE ... RETURNING *) SELECT ...`, MERGE, DDL,
   sequences), and nothing of it could commit anyway. Whatever is local to the cursor
   (temporary objects, variables, a search path) goes with it.
3. Only one statement, of type SELECT, is executed, and it is the parsed statement that runs
   (never the text again), so a comment or a second statement cannot ride along.
4. Every function, table function and macro its parse tree calls, at any depth and under
   any qualification or case, is on the reviewed allow-list of `projector.sql_functions`:
   nothing that runs SQL of its own (which would run outside fences 2 and 4), reads files,
   or acts outside the transaction; and every table it reads is a CTE in scope or one of
   the read model's own tables and views (`projector.sql_refs`), so no name becomes a file
   scan or a database file to open (the database's own included, which fence 1 cannot
   close).

A query is interrupted at its deadline and answers at most `max_rows` rows and `max_bytes`
bytes of JSON, saying which limit cut it. Every refusal is a 4xx that says why.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import duckdb
import msgspec

from common.errors import BadRequest, Invalid, IronstarError, TooLarge, Unavailable
from projector.readmodel_file import checkpoint_of
from projector.sql_refs import check_refs, read_model_tables
from projector.sql_words import parsed

# Why a statement is refused, by the name its author wrote, else by DuckDB's type.
_REFUSED = {
    "ATTACH": "attaching databases is not allowed",
    "DETACH": "detaching databases is not allowed",
    "COPY": "COPY reads or writes files; it is not allowed",
    "COPY_DATABASE": "COPY reads or writes files; it is not allowed",
    "EXPORT": "EXPORT writes files; it is not allowed",
    "LOAD": "INSTALL and LOAD of extensions are not allowed",
    "SET": "settings cannot be changed",
    "VARIABLE_SET": "settings and variables cannot be changed",
    "PRAGMA": "PRAGMA is not allowed; use SELECT over duckdb_tables() and friends",
    "CALL": "CALL is not allowed; use SELECT * FROM <table function>",
    "TRANSACTION": "transactions are the sandbox's own; send the SELECT alone",
    # By the word that starts the statement, where DuckDB's type (CALL) would mislead:
    "CHECKPOINT": "checkpoints act database-wide, outside the transaction",
    "FORCE": "checkpoints act database-wide, outside the transaction",
}
_READ_ONLY = "the read models are read-only"
_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
_CHUNK = 256  # rows fetched at a time at most while counting bytes
INTERRUPT_EVERY_S = 0.05
ENVELOPE_BYTES = 1024  # room kept in `max_bytes` for the reply around the rows


def check(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """The one read-only SELECT in `sql` (DuckDB's parsed statement, to execute), or
    `Invalid` (422) saying why it is refused: fences 3 and 4 of the module's docstring,
    judged on DuckDB's own parse (`extract_statements`, `json_serialize_sql`)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise Invalid(f"the SQL does not parse: {first_line(exc)}", field="sql") from None
    if len(statements) != 1:
        raise Invalid(
            f"send exactly one statement, got {len(statements)}; split it into several requests",
            field="sql",
        )
    statement = parsed(statements[0])
    if statement.type != "SELECT":
        reason = _REFUSED.get(statement.name) or _REFUSED.get(statement.type, _READ_ONLY)
        raise Invalid(
            "only a single read-only SELECT (or WITH … SELECT) is allowed, "
            f"got {statement.name}: {reason}",
            field="sql",
            statement=statement.name,
        )
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except RecursionError:
        raise Invalid(
            "the statement is nested too deeply to check; flatten it", field="sql"
        ) from None
    if tree.get("error"):
        raise Invalid(
            f"the statement cannot be checked: {tree.get('error_message', '')[:200]}; "
            "write it as a plain SELECT",
            field="sql",
        )
    check_refs(tree, read_model_tables(con))
    return statements[0]


def run(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    deadline: float,
    max_rows: int,
    max_bytes: int,
    limit_s: float,
    as_of: list[int] | None = None,
) -> dict[str, Any]:
    """Run one read-only SELECT on a fresh `cursor` (closed here) until `deadline`
    (time.monotonic(), in seconds); returns `{"columns", "rows", "truncated",
    "truncated_by", "max_rows", "max_bytes"}` whose JSON stays under `max_bytes`
    (`truncated_by`: "rows", "bytes" or None). `limit_s` is the whole time limit, for
    messages. Refusals: `Invalid` (422, `check`), `BadRequest` (400: the time limit, a
    write, file access, a DuckDB error, a value JSON cannot hold), `TooLarge` (413: the
    first row alone is over `max_bytes`); interrupted before its deadline (the replica
    swapped in a rebuilt file or stops), `Unavailable` (503, to retry). `as_of`, if given,
    gets the checkpoint the answer is as of appended (read in the query's own transaction)."""
    done = threading.Event()
    watchdog = threading.Thread(target=_interrupt_at, args=(cursor, deadline, done), daemon=True)
    try:
        fetched = _select(cursor, sql, watchdog, max_rows, max_bytes, as_of)
    except (duckdb.Error, ValueError, OverflowError, RecursionError) as exc:
        raise _refusal(exc, deadline, limit_s) from None
    finally:
        done.set()
        cursor.close()  # rolls the read-only transaction back with everything of the cursor
    if fetched.cut == "bytes" and not fetched.rows:
        raise TooLarge(
            f"the first row of the answer alone is over the {max_bytes:,}-byte limit of an "
            "answer; select fewer or shorter columns (e.g. left(text, 1000))",
            field="sql",
            limit="bytes",
        )
    return {
        "columns": fetched.columns,
        "rows": fetched.rows,
        "truncated": fetched.cut is not None,
        "truncated_by": fetched.cut,
        "max_rows": max_rows,
        "max_bytes": max_bytes,
    }


class _Fetched(NamedTuple):
    """A SELECT's column names, its rows as encoded JSON, and which limit cut them
    ("rows", "bytes", or None)."""

    columns: list[str]
    rows: list[msgspec.Raw]
    cut: str | None


def _select(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    watchdog: threading.Thread,
    max_rows: int,
    max_bytes: int,
    as_of: list[int] | None,
) -> _Fetched:
    """Check `sql` and run it in a read-only transaction, `watchdog` started once it runs."""
    cursor.execute("BEGIN TRANSACTION READ ONLY")
    statement = check(cursor, sql)
    if as_of is not None:
        as_of.append(checkpoint_of(cursor))
    watchdog.start()
    return _fetch(cursor.execute(statement), max_rows, max_bytes)


def _refusal(exc: BaseException, deadline: float, limit_s: float) -> IronstarError:
    """What a query that failed with `exc` answers: 503 to retry when the replica stopped
    it before its `deadline`, else a 400 saying why."""
    if isinstance(exc, duckdb.InterruptException):
        if time.monotonic() < deadline:
            return Unavailable(
                "the replica stopped the query before its time limit (it swapped in a rebuilt "
                "read model, or is shutting down); retry",
                retry_after=1,
            )
        return BadRequest(
            f"the query ran into the {limit_s:g} s limit (counted from its arrival, waiting "
            "for a slot included) and was stopped; narrow it (WHERE, LIMIT) or aggregate first",
            field="sql",
            limit="time",
        )
    if isinstance(exc, duckdb.PermissionException):
        return BadRequest(
            "file, network and extension access is disabled for ad-hoc SQL "
            f"({first_line(exc)}); query the read-model tables instead",
            field="sql",
        )
    if isinstance(exc, duckdb.TransactionException):
        return BadRequest(
            f"ad-hoc SQL is read-only and cannot change the read models ({first_line(exc)})",
            field="sql",
            limit="read-only",
        )
    if isinstance(exc, duckdb.Error):
        return BadRequest(f"the query failed: {first_line(exc)}", field="sql")
    return BadRequest(  # a value Python cannot hold
        f"the answer cannot be converted to JSON ({type(exc).__name__}: {first_line(exc)}); "
        "cast the column to VARCHAR",
        field="sql",
    )


def interrupter(cursor: duckdb.DuckDBPyConnection) -> Callable[[], None]:
    """`cursor.interrupt`, harmless once the cursor is closed."""

    def interrupt() -> None:
        with contextlib.suppress(duckdb.Error):
            cursor.interrupt()

    return interrupt


def _interrupt_at(
    cursor: duckdb.DuckDBPyConnection, deadline: float, done: threading.Event
) -> None:
    """Interrupt the cursor from `deadline` on until the query is done. Repeatedly: DuckDB
    forgets an interrupt that arrives before the query starts executing."""
    if done.wait(max(deadline - time.monotonic(), 0.0)):
        return
    while True:
        interrupter(cursor)()
        if done.wait(INTERRUPT_EVERY_S):
            return


def _fetch(result: duckdb.DuckDBPyConnection, max_rows: int, max_bytes: int) -> _Fetched:
    """Columns and rows as encoded JSON, up to `max_rows` rows and, with the reply around
    them, `max_bytes` bytes; and which limit cut them."""
    columns = [d[0] for d in result.description or ()]
    budget = max_bytes - ENVELOPE_BYTES - len(_json.encode(columns))
    rows: list[msgspec.Raw] = []
    used, widest = 0, 0
    # One row first, then as many as the bytes left would hold at the widest row seen, so
    # rows of many megabytes are never fetched into Python by the hundred.
    while chunk := result.fetchmany(max(1, min(_CHUNK, (budget - used) // (widest or budget)))):
        for row in chunk:
            if len(rows) == max_rows:
                return _Fetched(columns, rows, "rows")
            encoded = _json.encode(list(row))
            used += len(encoded) + 1
            widest = max(widest, len(encoded) + 1)
            if used > budget:
                return _Fetched(columns, rows, "bytes")
            rows.append(msgspec.Raw(encoded))
    return _Fetched(columns, rows, None)


def encode(value: Any) -> bytes:
    """JSON of an answer holding encoded rows (any other DuckDB value as text)."""
    return _json.encode(value)


def first_line(exc: BaseException, max_chars: int = 300) -> str:
    """The first line of `exc`'s message, at most `max_chars` long ('' for none)."""
    return (str(exc).strip().splitlines() or [""])[0][:max_chars]
