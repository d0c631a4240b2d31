"""An app's SQL checked at start, against an in-memory DuckDB laid out as a read model.

The engine's tables are created first, each holding a row; then every projection's DDL
in order (the built-in ones first), its apply statements over an empty `batch` (rolled
back), and every SQL query with placeholder parameters in a read-only transaction. So a
syntax error, an unknown table or column, a `$name` that is no parameter, a query that is
not a plain read-only SELECT (`projector.sql.check`'s test: one SELECT, no data-modifying
CTE), DDL or apply SQL writing a table that is not its projection's (by the statement's
target, and by the engine's tables found unchanged), and `tables=` not matching what the
DDL creates are refused before a service starts, one line each.

Nothing is run before its parsed statement type (`duckdb.extract_statements`) is known
safe: DDL may only CREATE a table, index or view; apply only INSERT, UPDATE, DELETE or
MERGE INTO its projection's tables; a query only SELECT. No app's SQL may name the
engine's private tables (`sql_words.PRIVATE`: checkpoints, dead letters, pending states).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import duckdb
import msgspec
from msgspec import inspect

from common import builtin
from common.app import Projection, Query
from common.catalogue import Catalogue
from common.checks_names import ENGINE_TABLES
from projector.readmodel_file import META_DDL
from projector.sql import check, first_line
from projector.sql_words import Parsed, parse, private_named, refused_call
from projector.sql_words import targets as _targets
from projector.sql_words import words as _words
from projector.staging import VIEW

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_STAGED = """CREATE TEMP TABLE _staged (sequence BIGINT, aggregate_type VARCHAR,
    aggregate_id VARCHAR, event_type VARCHAR, version BIGINT, occurred_at VARCHAR,
    payload VARCHAR, metadata VARCHAR, command_id VARCHAR, new_command BOOLEAN)"""
_SEEDS = (
    "INSERT INTO dead_letters (sequence, subject, error) VALUES (0, 'check', 'check')",
    "INSERT INTO projection_versions VALUES ('check', 0)",
)
_ENGINE = "Ironstar"
# What DDL may create and apply may do, by DuckDB's parsed statement type: nothing that
# changes settings, transactions, extensions, attached databases or the schema itself.
_DDL_KINDS = ("table", "index", "view")
_APPLY_TYPES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE_INTO"})
_BUILT_IN = frozenset(projection.name for projection in builtin.BUILT_IN)


def problems(cat: Catalogue) -> Iterator[str]:
    """One line per problem of `cat`'s SQL (DDL, apply statements, queries), found by
    running it on an in-memory DuckDB laid out as a read model (see the module's
    docstring); nothing when all of it is sound. Never raises for the app's SQL."""
    con = duckdb.connect(":memory:", config={"enable_external_access": "false"})
    try:
        for statement in (*META_DDL, "INSERT INTO checkpoint VALUES (1, 0, '')", *_SEEDS):
            con.execute(statement)
        owners = {name: _ENGINE for name in _objects(con)}
        engine = _state(con, owners)
        for projection in cat.projections.values():
            yield from _ddl(con, projection, owners)
        if _state(con, engine.keys()) != engine:
            yield f"the DDL changes Ironstar's own tables ({', '.join(sorted(ENGINE_TABLES))})"
            return
        con.execute(_STAGED)
        con.execute(VIEW)
        known = {
            "aggregate_type": set(cat.aggregates),
            "event_type": set().union(*(a.event_types for a in cat.aggregates.values())),
        }
        for projection in cat.projections.values():
            if isinstance(projection.apply, tuple):
                yield from _apply(con, projection, owners, engine, known)
            for name, query in projection.queries.items():
                if query.sql:
                    yield from _query(con, f"query {projection.name}/{name}", query)
    finally:
        con.close()


def _ddl(con: Any, projection: Projection, owners: dict[str, str]) -> Iterator[str]:
    where = f"projection {projection.name}"
    before = _objects(con)
    for statement in projection.ddl:
        refused = _refused(statement, projection, owners, _ddl_refusal)
        if refused:
            yield f"{where}: its DDL {refused}"
            return
        try:
            con.execute(statement)
        except duckdb.Error as exc:
            yield f"{where}: its DDL fails: {_line(exc)}"
            return
    created = {name: kind for name, kind in _objects(con).items() if name not in before}
    for statement in projection.ddl:  # it runs at every start, on a file that has it all
        try:
            con.execute(statement)
        except duckdb.Error as exc:
            yield (
                f"{where}: its DDL fails when run again, as at every start (use CREATE TABLE "
                f"IF NOT EXISTS, CREATE OR REPLACE VIEW): {_line(exc)}"
            )
            return
    for name in created:
        owners[name] = projection.name
    for table in projection.tables:
        if created.get(table) != "table":
            yield f"{where}: table {table} (tables=) is not a table its DDL creates"
    for name, kind in sorted(created.items()):
        if kind == "table" and name not in projection.tables:
            yield f"{where}: its DDL creates table {name}, not in tables= (a rebuild drops those)"


def _apply(
    con: Any,
    projection: Projection,
    owners: dict[str, str],
    engine: dict[str, _TableState],
    known: dict[str, set[str]],
) -> Iterator[str]:
    where = f"projection {projection.name}"
    assert isinstance(projection.apply, tuple)
    con.execute("BEGIN")
    try:
        for number, statement in enumerate(projection.apply, start=1):
            refused = _refused(statement, projection, owners, _apply_refusal)
            if refused:
                yield f"{where}: apply statement {number} {refused}"
                return
            for column, value in _compared(statement):
                if value not in known[column]:
                    yield (
                        f"{where}: apply statement {number} reads {column} {value!r}, which "
                        f"no aggregate has (known: {', '.join(sorted(known[column]))})"
                    )
            try:
                con.execute(statement)
            except duckdb.Error as exc:
                yield f"{where}: apply statement {number} fails: {_line(exc)}"
                return
        if _state(con, engine.keys()) != engine:
            yield f"{where}: its apply statements change Ironstar's own tables"
    finally:
        con.execute("ROLLBACK")


def _query(con: Any, where: str, query: Query) -> Iterator[str]:
    private = _private(None, query.sql)
    if private:  # dead letters, checkpoints and pending states are no app's to serve
        yield f"{where}: its SQL {private}; a query reads its projections' tables"
        return
    fields = {f.name: f for f in inspect.type_info(query.params).fields}  # type: ignore[attr-defined]
    for name in sorted(set(_PARAM.findall(query.sql)) - fields.keys()):
        known = ", ".join(fields) or "none"
        yield f"{where}: its SQL uses ${name}, which is not one of its params ({known})"
        return
    used = set(_PARAM.findall(query.sql))
    values = {name: _placeholder(f) for name, f in fields.items() if name in used}
    con.execute("BEGIN TRANSACTION READ ONLY")
    try:
        check(con, query.sql)
        con.execute(query.sql, values).fetchall()
    except duckdb.TransactionException as exc:
        yield f"{where}: its SQL writes, and a query must be read-only: {_line(exc)}"
    except Exception as exc:  # an IronstarError of the sandbox's check, or DuckDB's
        yield f"{where}: {getattr(exc, 'message', None) or _line(exc)}"
    finally:
        con.execute("ROLLBACK")


def _placeholder(field: Any) -> Any:
    """A value of the parameter's type within its bounds (its default when it has one)."""
    if field.default is not msgspec.NODEFAULT:
        return field.default
    kind = field.type
    if isinstance(kind, inspect.UnionType):
        kind = next((k for k in kind.types if not isinstance(k, inspect.NoneType)), kind)
    if isinstance(kind, inspect.LiteralType):
        return kind.values[0]
    if isinstance(kind, inspect.BoolType):
        return False
    if isinstance(kind, (inspect.IntType, inspect.FloatType)):
        low = kind.ge if kind.ge is not None else (kind.gt + 1 if kind.gt is not None else 0)
        return low if kind.le is None else min(low, kind.le)
    if isinstance(kind, inspect.StrType):
        return "x" * (kind.min_length or 1)
    return None


def _named(said: list[Parsed]) -> str:
    """The statements as their author wrote them (`PRAGMA`, not DuckDB's `SET`)."""
    return ", ".join(statement.name for statement in said) or "nothing"


def _ddl_refusal(statement: str) -> str:
    """Why a DDL statement is refused ('' when it is a CREATE of a table, index or view),
    decided before it is ever run."""
    try:
        said = parse(statement)
    except duckdb.Error as exc:
        return f"does not parse: {_line(exc)}"
    if {parsed.type for parsed in said} != {"CREATE"}:
        return f"is {_named(said)}; DDL may only CREATE a TABLE, INDEX or VIEW"
    words = _words(statement, keep_quotes=True)  # a 'create' in a string is no statement
    for i, word in enumerate(words):
        if word == "create":
            kind = next((w for w in words[i + 1 :] if w not in ("or", "replace", "unique")), "")
            if kind not in _DDL_KINDS:
                return f"creates a {kind.upper()}; DDL may only CREATE a TABLE, INDEX or VIEW"
    return ""


def _apply_refusal(statement: str) -> str:
    """Why an apply statement is refused ('' when it is an INSERT, UPDATE, DELETE or
    MERGE), decided before it is ever run."""
    try:
        said = parse(statement)
    except duckdb.Error as exc:
        return f"does not parse: {_line(exc)}"
    if not said or not _APPLY_TYPES.issuperset(parsed.type for parsed in said):
        return (
            f"is {_named(said)}; apply may only INSERT, UPDATE, DELETE or MERGE INTO its "
            "projection's tables"
        )
    return ""


def _private(projection: Projection | None, statement: str) -> str:
    """`names <table>, Ironstar's own` when the statement of an app's projection (not a
    built-in one) names one of `PRIVATE`."""
    if projection is not None and projection.name in _BUILT_IN:
        return ""
    named = private_named(statement)
    return f"names {named}, Ironstar's own" if named else ""


def _refused(
    statement: str, projection: Projection, owners: dict[str, str], kind: Callable[[str], str]
) -> str:
    """Why a DDL or apply statement of `projection` may not run ('' if it may): it writes
    another's table, is of a kind `kind` refuses, names Ironstar's tables, or calls a
    refused function. Judged before anything runs."""
    bad = _foreign(statement, projection, owners)
    if bad:
        return f"writes {bad}"
    return kind(statement) or _private(projection, statement) or _denied_call(projection, statement)


def _denied_call(projection: Projection, statement: str) -> str:
    """`calls <f>(), refused: <why>` when an app's DDL or apply statement calls a function
    the ad-hoc SQL review refused (`sql_words.refused_call`)."""
    if projection.name in _BUILT_IN:
        return ""
    refused = refused_call(statement)
    return f"calls {refused}" if refused else ""


def _foreign(statement: str, projection: Projection, owners: dict[str, str]) -> str:
    """`<table>, <owner>'s` for the first table `statement` writes that another owns."""
    for target in _targets(statement):
        owner = owners.get(target, projection.name)
        if owner != projection.name or target == "main":
            whose = "the database's schema" if target == "main" else f"{owner}'s"
            return f"{target}, {whose}"
    return ""


class _Compared(NamedTuple):
    """A text an `aggregate_type` or `event_type` column is compared with."""

    column: str
    value: str


class _TableState(NamedTuple):
    """A table's (column, type) pairs and its row count (None when it has no columns)."""

    columns: list[tuple[str, str]]
    rows: list[tuple[int]] | None


def _compared(statement: str) -> Iterator[_Compared]:
    """Each text an `aggregate_type` or `event_type` is compared with:
    `= 'x'`, `IN ('x', 'y')`, `CASE event_type WHEN 'x'`."""
    words = _words(statement, keep_quotes=True)
    for i, word in enumerate(words):
        if word not in ("aggregate_type", "event_type"):
            continue
        j = i + 1
        if words[j : j + 1] in (["="], ["=="]):
            values = words[j + 1 : j + 2]
        elif words[j : j + 2] == ["in", "("]:
            values = words[j + 2 : words.index(")", j) if ")" in words[j:] else None]
        elif i and words[i - 1] == "case":
            ends = [k for k in range(j, len(words)) if words[k] == "end"]
            stop = ends[0] if ends else len(words)
            values = [words[k + 1] for k in range(j, stop - 1) if words[k] == "when"]
        else:
            continue
        for value in values:
            if value.startswith("'") and value.endswith("'") and len(value) > 1:
                yield _Compared(word, value[1:-1].replace("''", "'"))


def _objects(con: Any) -> dict[str, str]:
    rows = con.execute(
        """SELECT table_name, 'table' FROM duckdb_tables() WHERE NOT temporary
           UNION ALL SELECT view_name, 'view' FROM duckdb_views()
           WHERE NOT internal AND NOT temporary"""
    ).fetchall()
    return {str(name).lower(): kind for name, kind in rows}


def _state(con: Any, names: Any) -> dict[str, _TableState]:
    """Columns and row count of each table `names` (the engine's, to see them unchanged)."""
    state: dict[str, _TableState] = {}
    for name in sorted(names):
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [name]
        ).fetchall()
        rows = con.execute(f'SELECT count(*) FROM "{name}"').fetchall() if columns else None
        state[name] = _TableState(columns, rows)
    return state


def _line(exc: BaseException) -> str:
    return first_line(exc, 200)
