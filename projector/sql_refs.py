"""What a parsed ad-hoc SELECT refers to, checked against allow-lists (fence 4 of
`projector.sql`).

Works on the tree `json_serialize_sql` gives. Every function, table function and macro a
statement calls must be allowed by `projector.sql_functions.refusal`; a function that takes
another function's name as a string (`list_aggregate([1, 2], 'sum')` and its aliases) only
with a string literal naming an allowed function. Every table a statement reads (any catalog,
schema and name parts, `SHOW`/`DESCRIBE`/`SUMMARIZE` included) must be a CTE in scope or one
of the read model's own tables and views in its `main` schema (`t`, `main.t`,
`<database>.main.t`): nothing else, so no name DuckDB would turn into a file scan, a database
file to open, or another catalog's object is ever looked up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import duckdb

from common.errors import Invalid
from projector.sql_functions import refusal

# Functions whose argument `function_name` (by default the second) names the function to run.
BY_NAME = frozenset({"list_aggregate", "list_aggr", "aggregate", "array_aggregate", "array_aggr"})
_FILE_LIKE = set("./\\:")  # in a CTE name: a file path DuckDB would scan if it were out of scope
_TABLES = """
    SELECT lower(table_name) FROM duckdb_tables()
    WHERE database_name = current_database() AND schema_name = 'main'
    UNION ALL
    SELECT lower(view_name) FROM duckdb_views()
    WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal
"""


class ReadModelTables(NamedTuple):
    """The database's name and its tables' and views' names in `main` (lower case)."""

    database: str
    tables: frozenset[str]


def read_model_tables(con: duckdb.DuckDBPyConnection) -> ReadModelTables:
    """`con`'s tables and views, read from the live catalog (`duckdb_tables()`,
    `duckdb_views()`)."""
    database = con.execute("SELECT lower(current_database())").fetchall()[0][0]
    return ReadModelTables(database, frozenset(row[0] for row in con.execute(_TABLES).fetchall()))


def check_refs(tree: Any, known: ReadModelTables) -> None:
    """Nothing, or `Invalid` (422) naming the first function or table `tree` (a
    `json_serialize_sql` tree) may not use: only `known`'s tables and CTEs in scope."""
    for node, ctes in _nodes(tree):
        if isinstance(name := node.get("function_name"), str):
            _check_function(name, node)
        if isinstance(table := node.get("table_name"), str) and table:
            _check_table(node, table, known, ctes)


def _check_function(name: str, node: dict[str, Any]) -> None:
    if (why := refusal(name)) is None and name.lower() in BY_NAME:
        why = _by_name_refusal(node.get("arguments"))
    if why is not None:
        raise Invalid(
            f"{name.lower()}() is not allowed in ad-hoc SQL: {why}",
            field="sql",
            function=name.lower(),
        )


def _by_name_refusal(arguments: Any) -> str | None:
    """Why a call naming its function by string may not run, or None: the name must be a
    string literal naming an allowed function."""
    arguments = arguments if isinstance(arguments, list) else []
    named = [a for a in arguments if isinstance(a, dict) and a.get("name") == "function_name"]
    argument = named[0] if named else (arguments[1] if len(arguments) > 1 else {})
    expression = argument.get("expression") if isinstance(argument, dict) else None
    literal = expression.get("literal") if isinstance(expression, dict) else None
    if not isinstance(literal, dict) or literal.get("kind") != "STRING":
        return "the function it runs must be named by a string literal, so it can be checked"
    target = str(literal.get("text"))
    if (why := refusal(target)) is not None:
        return f"it would run {target.lower()}(), which is not allowed: {why}"
    return None


def _check_table(
    node: dict[str, Any], table: str, known: ReadModelTables, ctes: frozenset[str]
) -> None:
    database, tables = known
    catalog = str(node.get("catalog_name") or "").lower()
    schema = str(node.get("schema_name") or "").lower()
    name = table.lower()
    if not catalog and not schema and name in ctes and not _FILE_LIKE & set(name):
        return
    if name in tables and (catalog, schema) in {("", ""), ("", "main"), (database, "main")}:
        return
    parts = (node.get("catalog_name"), node.get("schema_name"), table)
    reference = ".".join('"' + str(p).replace('"', '""') + '"' for p in parts if p)
    raise Invalid(
        f"{reference!r} is not a table of the read models; files cannot be read, nor other "
        f"databases: only the read models' tables and views ({', '.join(sorted(tables))}) "
        f"as <name>, main.<name> or {database}.main.<name>, and CTEs in scope",
        field="sql",
        table=reference,
    )


def _nodes(tree: Any) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Every object of the tree with the CTE names in scope at it (lower case): a statement's
    CTEs for its body, and for each CTE's own query the CTEs before it and itself."""
    stack: list[tuple[Any, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        node, scope = stack.pop()
        if isinstance(node, list):
            stack.extend((child, scope) for child in node)
        elif isinstance(node, dict):
            yield node, scope
            entries = (node.get("cte_map") or {}).get("map") or []
            names = [str(e.get("key", "")).lower() for e in entries if isinstance(e, dict)]
            for i, entry in enumerate(entries):
                stack.append((entry, scope | frozenset(names[: i + 1])))
            inner = scope | frozenset(names)
            stack.extend((v, inner) for k, v in node.items() if k != "cte_map")


def tables_of(tree: Any) -> frozenset[str]:
    """The tables and views `tree` reads (lower case), CTEs in scope left out."""
    return frozenset(
        table.lower()
        for node, ctes in _nodes(tree)
        if isinstance(table := node.get("table_name"), str) and table and table.lower() not in ctes
    )
