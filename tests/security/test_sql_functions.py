"""The allow-list of functions ad-hoc SQL may call is reviewed for the installed DuckDB:
every function it has is classified, no allowed macro hides a refused function, refused
functions are refused under any name or nesting, and what an analyst needs still runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.errors import Invalid
from projector.readmodel import ReadModel
from projector.sql import run
from projector.sql_functions import ALLOWED, DENIED, DENIED_PREFIXES, refusal
from tests.support.sql_attacks import BY_NAME, NOT_TABLES, SQL_RUNNERS, STATE


def installed() -> dict[str, set[str]]:
    """Every function of the installed DuckDB (a fresh in-memory database): name -> types."""
    con = duckdb.connect()
    names: dict[str, set[str]] = {}
    for name, kind in con.execute(
        "SELECT function_name, function_type FROM duckdb_functions()"
    ).fetchall():
        names.setdefault(name, set()).add(kind)
    return names


def test_every_function_of_the_installed_duckdb_is_reviewed_as_allowed_or_denied() -> None:
    unreviewed = sorted(
        name
        for name in installed()
        if name.lower() not in ALLOWED
        and name.lower() not in DENIED
        and not name.lower().startswith(tuple(DENIED_PREFIXES))
    )
    assert unreviewed == [], (
        f"DuckDB {duckdb.__version__} has functions nobody reviewed for ad-hoc SQL; "
        f"add each to ALLOWED or DENIED in projector/sql_functions.py: {unreviewed}"
    )
    assert not ALLOWED & set(DENIED)


def test_no_function_that_runs_sql_or_reads_files_is_allowed() -> None:
    for name in (
        "query", "query_table", "json_execute_serialized_sql", "json_serialize_sql",
        "json_deserialize_sql", "read_blob", "read_text", "read_csv", "read_csv_auto",
        "read_parquet", "read_json", "read_json_auto", "read_duckdb", "glob", "sniff_csv",
        "parquet_metadata", "checkpoint", "force_checkpoint", "nextval", "setseed",
        "enable_logging", "truncate_duckdb_logs", "duckdb_secrets", "pragma_storage_info",
    ):  # fmt: skip
        assert refusal(name) is not None and refusal(name.upper()) is not None, name
    for name, kinds in installed().items():
        if name.lower().startswith(("read_", "parquet_", "pragma_")) or kinds == {"pragma"}:
            assert refusal(name) is not None, name


def called(expression: str) -> Iterator[str]:
    """Every function name in the parse tree of `SELECT <expression>`."""
    con = duckdb.connect()
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [expression]).fetchone()[0])  # type: ignore[index]
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("function_name"), str):
                yield node["function_name"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def test_no_allowed_macro_calls_a_refused_function_in_its_body() -> None:
    """A macro's body is bound inside DuckDB, where the parse-tree check cannot see it."""
    con = duckdb.connect()
    macros = con.execute(
        "SELECT function_name, function_type, macro_definition FROM duckdb_functions() "
        "WHERE function_type IN ('macro', 'table_macro') AND macro_definition IS NOT NULL"
    ).fetchall()
    assert macros
    for name, kind, body in macros:
        if refusal(name) is not None:
            continue
        text = f"SELECT * FROM ({body})" if kind == "table_macro" else f"SELECT {body}"
        refused = [f for f in called(text) if refusal(f) is not None]
        assert refused == [], (name, refused)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModel]:
    model = ReadModel(tmp_path_factory.mktemp("fn") / "projector-1.duckdb")
    model.con.execute("CHECKPOINT")  # the file and its WAL exist
    yield model
    model.close()


def ask(model: ReadModel, text: str) -> list[Any]:
    answer = run(model.con.cursor(), text, time.monotonic() + 5, 100, 100_000, 5.0)
    return [json.loads(bytes(row)) for row in answer["rows"]]


@pytest.mark.parametrize("attack", SQL_RUNNERS)
def test_a_function_that_runs_sql_is_refused_however_it_is_named_or_nested(
    model: ReadModel, attack: str
) -> None:
    before = [model.con.execute(s).fetchall() for s in STATE]
    with pytest.raises(Invalid) as refused:
        ask(model, attack)
    assert "() is not allowed" in refused.value.message
    assert [model.con.execute(s).fetchall() for s in STATE] == before


def test_the_read_models_own_files_cannot_be_read_by_name_or_function(
    model: ReadModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = Path(model.con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal")
                .fetchone()[0])  # type: ignore[index]  # fmt: skip
    for file in (path, Path(f"{path}.wal"), path.parent):
        for attack in (
            f"SELECT * FROM read_blob('{file}')",
            f"SELECT * FROM read_text('{file}')",
            f"SELECT * FROM '{file}'",
            f'SELECT * FROM "{file}"',
            f"SELECT * FROM read_csv('{file}')",
            f"SELECT * FROM glob('{file}/*')",
            f'SELECT * FROM "{file.with_suffix("")}"."{file.suffix.lstrip(".")}"',
            f'SELECT * FROM "{file}.tmp/x"."csv"',
            f'SELECT * FROM "{file}".main."csv"',
            f'DESCRIBE "{file.parent}"."{file.name}"',
        ):
            with pytest.raises(Invalid):
                ask(model, attack)


@pytest.mark.parametrize("attack", NOT_TABLES)
def test_a_table_reference_outside_the_read_models_is_a_422_naming_it(
    model: ReadModel, attack: str
) -> None:
    with pytest.raises(Invalid, match="is not a table of the read models") as refused:
        ask(model, attack)
    assert refused.value.detail["table"] in refused.value.message


def test_the_read_models_tables_views_and_ctes_are_readable_however_qualified(
    model: ReadModel,
) -> None:
    database = model.con.execute("SELECT current_database()").fetchall()[0][0]
    for text in (
        "SELECT count(*) FROM todos",
        "SELECT count(*) FROM TODOS",
        "SELECT count(*) FROM main.todos",
        f'SELECT count(*) FROM "{database}".main.todos',
        f'SELECT count(*) FROM "{database.upper()}"."MAIN"."Todos"',
        "SELECT count(*) FROM throughput",
        "WITH c AS (SELECT 1) SELECT count(*) FROM c",
        "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT count(*) FROM b",
        "SELECT (WITH c AS (SELECT 1) SELECT count(*) FROM c)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1) "
        "SELECT count(*) FROM r",
    ):
        assert len(ask(model, text)) == 1, text
    assert len(ask(model, "DESCRIBE todos")) == len(ask(model, "SUMMARIZE main.todos")) > 0


@pytest.mark.parametrize("attack", BY_NAME)
def test_a_function_named_by_string_runs_only_if_a_literal_names_an_allowed_one(
    model: ReadModel, attack: str
) -> None:
    with pytest.raises(Invalid, match=r"\(\) is not allowed"):
        ask(model, attack)


def test_list_aggregate_of_an_allowed_aggregate_still_runs(model: ReadModel) -> None:
    assert ask(
        model,
        "SELECT list_aggregate([1, 2], 'sum'), [3, 4].list_aggr('max'), "
        "aggregate(['a', 'b'], function_name := 'string_agg'), "
        "array_aggregate(['a', 'b'], 'string_agg', '-')",
    ) == [[3, 4, "a,b", "a-b"]]


def test_a_statement_type_the_duckdb_module_does_not_know_is_a_422_naming_it(
    model: ReadModel,
) -> None:
    for text in ("UPDATE EXTENSIONS", "update extensions (httpfs)", " UPDATE\n EXTENSIONS (a, b)"):
        with pytest.raises(Invalid) as refused:
            ask(model, text)
        assert "UPDATE EXTENSIONS" in refused.value.message
        assert refused.value.detail["statement"] == "UPDATE EXTENSIONS"


def test_what_an_analyst_needs_still_runs(model: ReadModel) -> None:
    rows = ask(
        model,
        """
        WITH t AS (SELECT * FROM range(5) r(n)), j AS (SELECT '{"a": {"b": 2}}'::JSON AS doc)
        SELECT sum(n), avg(n), count(*) FILTER (WHERE n > 1), string_agg(n::VARCHAR, ','),
               max(j.doc->>'$.a.b'), json_extract(any_value(j.doc), '$.a')::VARCHAR,
               list_transform([1, 2], lambda x: x * 2), {'k': 1}.k, upper('a') || lower('B'),
               date_trunc('day', TIMESTAMP '2024-05-06 07:08:09')::VARCHAR,
               strftime(DATE '2024-05-06', '%Y'), coalesce(NULL, 1), regexp_matches('ab', 'b'),
               quantile_cont(n, 0.5), max(n) - min(n), 5 // 2, greatest(1, 2)
        FROM t, j
        """,
    )
    assert rows == [
        [10, 2.0, 3, "0,1,2,3,4", "2", '{"b":2}', [2, 4], 1, "Ab", "2024-05-06 00:00:00",
         "2024", 1, True, 2.0, 4, 2, 2]
    ]  # fmt: skip
    windowed = ask(
        model,
        "SELECT n, row_number() OVER w, lag(n) OVER w, sum(n) OVER w "
        "FROM generate_series(1, 3) g(n), unnest([1]) u(x) WINDOW w AS (ORDER BY n)",
    )
    assert windowed == [[1, 1, None, 1], [2, 2, 1, 3], [3, 3, 2, 6]]
    tables = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'todo_lists'"
    assert ask(model, tables) == [[1]]


def test_the_only_paths_duckdb_opens_to_the_database_are_its_own_files(model: ReadModel) -> None:
    """DuckDB opens its own file, WAL and temporary directory to itself even with external
    access off (the attacker's read_blob of the WAL went through there); no query can name
    them any more, and nothing else is open."""
    path = model.con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()
    assert path is not None
    settings = dict(
        model.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('allowed_directories', 'allowed_paths', 'enable_external_access')"
        ).fetchall()
    )
    assert settings["enable_external_access"] == "false"
    opened = settings["allowed_paths"].strip("[]").split(", ")
    opened += settings["allowed_directories"].strip("[]").split(", ")
    assert opened and all(p.startswith(path[0]) for p in opened), opened
    for file in opened:
        with pytest.raises(Invalid):
            ask(model, f"SELECT * FROM read_blob('{file}')")
