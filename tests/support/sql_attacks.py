"""Attacks on the ad-hoc SQL sandbox, and the state none of them may change.

Each attack: the SQL, the error class it must get, and words the refusal must say."""

from __future__ import annotations

from hypothesis import strategies as st

from common.errors import BadRequest, Invalid, IronstarError

WRITES = [
    "WITH x AS (DELETE FROM todo_lists RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (UPDATE checkpoint SET sequence = 0 RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO dead_letters (sequence) VALUES (-1) RETURNING *) SELECT * FROM x",
    "WITH x AS (DELETE FROM users RETURNING 1) SELECT 1",
    "WITH a AS (SELECT 1), b AS (DELETE FROM projection_versions RETURNING *) FROM b",
    "WITH x AS MATERIALIZED (DELETE FROM stream_counts RETURNING *) SELECT count(*) FROM x",
    "wItH x As (dElEtE fRoM TODO_LISTS returning *) select 1 from x",
]
_RUN_SQL = [
    "WITH x AS (DELETE FROM todos RETURNING 1) SELECT count(*) FROM x",
    "INSERT INTO users VALUES ('x', 'x', 'x', true, now(), now(), 1)",
    "UPDATE checkpoint SET sequence = 0",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM query('select 42')",
    "PREPARE p AS DELETE FROM todos",
]
# Functions that run SQL of their own (outside the read-only transaction and the checks),
# under every name, qualification, case and nesting an attacker tried or might.
SQL_RUNNERS = [
    *(
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql({}))".format(
            "'" + inner.replace("'", "''") + "'"
        )
        for inner in _RUN_SQL
    ),
    "SELECT * FROM main.json_execute_serialized_sql(json_serialize_sql('DELETE FROM todos'))",
    "SELECT * FROM system.main.json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM \"JSON_Execute_Serialized_SQL\"(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM JSON_EXECUTE_SERIALIZED_SQL('{}')",
    "SELECT (SELECT count(*) FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1')))",
    "WITH s AS (SELECT json_serialize_sql('DELETE FROM todos') AS j) "
    "SELECT * FROM s, json_execute_serialized_sql(s.j)",
    "SELECT json_deserialize_sql(json_serialize_sql('SELECT 1'))",
    "SELECT json_serialize_sql(json_serialize_sql('DELETE FROM todos'))",
    "SELECT json_serialize_plan('DELETE FROM todos')",
    "SELECT * FROM main.query('DELETE FROM todos')",
    "SELECT * FROM system.main.query_table('todos')",
    "SELECT * FROM \"Query\"('select 42')",
    "SELECT invoke(lambda x: x, 1)",
    "SELECT 'DELETE FROM todos'.query()",
    "SELECT * FROM todos WHERE text IN (FROM query('DELETE FROM todos RETURNING text'))",
    "SUMMARIZE SELECT * FROM query('SELECT 1')",
    "DESCRIBE SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM histogram(todos, completed)",
    "SELECT list_transform([1], lambda x: (SELECT count(*) FROM query('SELECT 1')))",
]
# Table references that are no table of the read models: qualified names DuckDB would turn
# into a file scan or a database file to open, other catalogs and schemas, CTEs out of scope.
NOT_TABLES = [
    'SELECT * FROM "projector/projector-1"."duckdb"',
    'SELECT * FROM "projector-1"."duckdb"',
    'SELECT * FROM "projector-1.duckdb.tmp/x"."csv"',
    'SELECT * FROM "x"."csv"',
    'SELECT * FROM "x".main."csv"',
    'SELECT * FROM "https://example"."csv"',
    'SELECT * FROM "x"."parquet"',
    'SELECT * FROM "x"."json"',
    'SELECT * FROM "/etc/passwd".main."csv"',
    "SELECT * FROM x.y.z",
    'SELECT * FROM "projector-1".other.todos',
    "SELECT * FROM memory.main.todos",
    "SELECT * FROM temp.main.todos",
    "SELECT * FROM system.main.todos",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_catalog.pg_class",
    'SELECT * FROM todos, (SELECT * FROM "x"."csv")',
    'SELECT * FROM todos WHERE text IN (SELECT * FROM "x"."csv")',
    'SELECT * FROM (WITH "c.csv" AS (SELECT 1) SELECT 1), "c.csv"',
    'WITH a AS (SELECT * FROM "b.csv"), "b.csv" AS (SELECT 1) SELECT * FROM a',
    'WITH "x.csv" AS (SELECT 1) SELECT * FROM "x.csv"',
    'SHOW "x"."csv"',
    'DESCRIBE "x".main."csv"',
    'SUMMARIZE "x"."parquet"',
    'SELECT * FROM "projector-1.duckdb"',
    'SELECT * FROM "TODOS.csv"',
]
# Functions that run another function named by a string: refused unless it is a literal
# naming an allowed function.
BY_NAME = [
    "SELECT list_aggregate([1, 2], 'histogram')",
    "SELECT list_aggr([1, 2], 'histogram')",
    "SELECT aggregate([1, 2], 'histogram')",
    "SELECT array_aggregate([1, 2], 'histogram')",
    "SELECT array_aggr([1, 2], 'HISTOGRAM')",
    "SELECT [1, 2].list_aggregate('histogram')",
    "SELECT main.list_aggregate([1, 2], 'histogram')",
    "SELECT list_aggregate([1, 2], function_name := 'histogram')",
    "SELECT list_aggregate(['select 1'], 'query')",
    "SELECT list_aggregate([1, 2], 'hist' || 'ogram')",
    "SELECT list_aggregate([1, 2], (SELECT 'histogram'))",
    "SELECT list_aggregate([1, 2], ?)",
    "SELECT list_aggregate([1, 2], text) FROM todos",
    "SELECT list_aggregate([1, 2], 'histogram_values')",
    "SELECT list_aggregate([1, 2], 'no_such_aggregate')",
]
ATTACKS: list[tuple[str, type[IronstarError], str]] = [
    *((attack, Invalid, "is not a table of the read models") for attack in NOT_TABLES),
    *((attack, Invalid, "() is not allowed") for attack in BY_NAME),
    *((write, BadRequest, "read-only") for write in WRITES),
    (
        "SELECT * FROM (WITH x AS (UPDATE todo_lists SET active = 0 RETURNING *) SELECT * FROM x)",
        BadRequest,
        "data-modifying",
    ),
    ("SELECT * FROM read_csv('/etc/passwd')", Invalid, "read_csv() is not allowed"),
    ("SELECT content FROM read_text('/etc/passwd')", Invalid, "read_text() is not allowed"),
    ("SELECT * FROM read_blob('/etc/passwd')", Invalid, "read_blob() is not allowed"),
    ("SELECT * FROM glob('/etc/*')", Invalid, "glob() is not allowed"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", Invalid, "not allowed"),
    ("SELECT * FROM duckdb_secrets()", Invalid, "duckdb_secrets() is not allowed"),
    ("SELECT * FROM '/etc/passwd.csv'", Invalid, "files cannot be read"),
    ("SELECT * FROM 'projector-1.duckdb.wal'", Invalid, "files cannot be read"),
    ('FROM "../projector/projector-1.duckdb"', Invalid, "files cannot be read"),
    *((attack, Invalid, "() is not allowed") for attack in SQL_RUNNERS),
    ("SELECT nextval('s')", Invalid, "nextval() is not allowed"),
    ("SELECT setseed(0.5)", Invalid, "setseed() is not allowed"),
    ("SELECT current_setting('memory_limit')", Invalid, "current_setting() is not allowed"),
    ("SELECT pg_sleep(100)", Invalid, "pg_sleep() is not allowed"),
    ("SELECT * FROM pragma_database_size()", Invalid, "pragma_database_size() is not allowed"),
    ("SELECT * FROM duckdb_logs()", Invalid, "duckdb_logs() is not allowed"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", Invalid, "sniff_csv() is not allowed"),
    ("SELECT no_such_function(1)", Invalid, "not on the reviewed list"),
    ("SELECT TRY(nextval('s'))", Invalid, "nextval() is not allowed"),
    ("SUMMARIZE '/etc/passwd'", Invalid, "files cannot be read"),
    ("DESCRIBE SELECT * FROM read_blob('/etc/passwd')", Invalid, "read_blob() is not allowed"),
    ("UPDATE EXTENSIONS", Invalid, "UPDATE EXTENSIONS"),
    ("UPDATE EXTENSIONS (httpfs)", Invalid, "UPDATE EXTENSIONS"),
    ("COPY (SELECT * FROM todos) TO '/tmp/stolen.csv'", Invalid, "COPY"),
    ("COPY todos FROM '/etc/passwd'", Invalid, "COPY"),
    ("EXPORT DATABASE '/tmp/stolen'", Invalid, "EXPORT"),
    ("IMPORT DATABASE '/tmp/stolen'", Invalid, "read-only"),
    ("ATTACH '/tmp/other.duckdb' AS other", Invalid, "ATTACH"),
    ("ATTACH ':memory:' AS scratch", Invalid, "ATTACH"),
    ("DETACH scratch", Invalid, "DETACH"),
    ("USE temp", Invalid, "got USE: settings cannot be changed"),
    ("INSTALL httpfs", Invalid, "LOAD"),
    ("LOAD httpfs", Invalid, "LOAD"),
    ("SET threads = 64", Invalid, "SET"),
    ("SET GLOBAL memory_limit = '100GB'", Invalid, "SET"),
    ("SET VARIABLE x = 1", Invalid, "cannot be changed"),
    ("RESET threads", Invalid, "SET"),
    ("PRAGMA show_tables", Invalid, "PRAGMA"),
    ("PRAGMA enable_profiling", Invalid, "PRAGMA"),
    ("CALL pragma_version()", Invalid, "CALL"),
    ("CALL checkpoint()", Invalid, "CALL"),
    ("CHECKPOINT", Invalid, "read-only"),
    ("FORCE CHECKPOINT", Invalid, "read-only"),
    ("CHECKPOINT", Invalid, "got CHECKPOINT: checkpoints act database-wide"),
    ("PRAGMA threads = 4", Invalid, "got PRAGMA: PRAGMA is not allowed"),
    ("SELECT * FROM checkpoint()", Invalid, "checkpoint() is not allowed"),
    ("SELECT * FROM main.force_checkpoint()", Invalid, "force_checkpoint() is not allowed"),
    ('SELECT * FROM "CheckPoint"()', Invalid, "checkpoint() is not allowed"),
    ("SELECT (SELECT count(*) FROM truncate_duckdb_logs())", Invalid, "truncate_duckdb_logs"),
    ("SELECT * FROM query('DELETE FROM todos')", Invalid, "query() is not allowed"),
    ("SELECT * FROM query_table('todos')", Invalid, "query_table() is not allowed"),
    ("SELECT * FROM enable_logging()", Invalid, "enable_logging() is not allowed"),
    ("BEGIN", Invalid, "got BEGIN: transactions are the sandbox's own"),
    ("COMMIT", Invalid, "got COMMIT: transactions are the sandbox's own"),
    ("ROLLBACK", Invalid, "got ROLLBACK: transactions are the sandbox's own"),
    ("ABORT", Invalid, "got ABORT: transactions are the sandbox's own"),
    ("SELECT 1; SELECT 2", Invalid, "exactly one statement"),
    ("SELECT 1; DROP TABLE todos", Invalid, "exactly one statement"),
    ("COMMIT; DELETE FROM todos", Invalid, "exactly one statement"),
    ("SELECT 1 /* ; */; DELETE FROM todos", Invalid, "exactly one statement"),
    ("SELECT 1 -- harmless\n; UPDATE checkpoint SET sequence = 0", Invalid, "exactly one"),
    ("DELETE FROM todos", Invalid, "read-only"),
    ("UPDATE checkpoint SET sequence = 0", Invalid, "read-only"),
    ("INSERT INTO users VALUES ('x', 'x', 'x', true, now(), now(), 1)", Invalid, "read-only"),
    (
        "MERGE INTO todos USING (SELECT 1 AS a) s ON false WHEN NOT MATCHED THEN DO NOTHING",
        Invalid,
        "read-only",
    ),
    ("TRUNCATE todos", Invalid, "read-only"),
    ("CREATE TABLE evil AS SELECT 1", Invalid, "read-only"),
    ("CREATE TEMP TABLE evil AS SELECT 1", Invalid, "read-only"),
    ("CREATE MACRO evil(x) AS x", Invalid, "read-only"),
    ("CREATE OR REPLACE VIEW throughput AS SELECT 1", Invalid, "read-only"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", Invalid, "read-only"),
    ("CREATE SEQUENCE q", Invalid, "read-only"),
    ("DROP TABLE todos", Invalid, "read-only"),
    ("ALTER TABLE checkpoint RENAME TO c2", Invalid, "read-only"),
    ("VACUUM", Invalid, "read-only"),
    ("ANALYZE", Invalid, "read-only"),
    ("PREPARE p AS DELETE FROM todos", Invalid, "read-only"),
    ("EXPLAIN ANALYZE DELETE FROM todos", Invalid, "read-only"),
    ("PIVOT todos ON completed USING count(*)", Invalid, "read-only"),
    ("SELEC nothing", Invalid, "does not parse"),
    ("SELECT " + "[" * 999 + "1" + "]" * 999, Invalid, "nested too deeply"),
    ("SELECT " + "(SELECT " * 1001 + "1" + ")" * 1001, Invalid, "does not parse"),
    (
        "SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b",
        BadRequest,
        "s limit (counted from its arrival",
    ),
]

STATE = [
    "SELECT md5(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR)) FROM todos t",
    "SELECT md5(string_agg(u::VARCHAR, '|' ORDER BY u::VARCHAR)) FROM users u",
    "SELECT md5(string_agg(e::VARCHAR, '|' ORDER BY e::VARCHAR)) FROM stream_counts e",
    "SELECT * FROM checkpoint",
    "SELECT * FROM projection_versions ORDER BY name",
    "SELECT count(*) FROM dead_letters",
    "SELECT name, value FROM duckdb_settings() ORDER BY name",
    "SELECT database_name FROM duckdb_databases() ORDER BY 1",
    "SELECT table_name, estimated_size, column_count FROM duckdb_tables() ORDER BY 1",
    "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1",
    "SELECT function_name FROM duckdb_functions() WHERE NOT internal ORDER BY 1",
    "SELECT sequence_name FROM duckdb_sequences()",
]


# Pieces an attacker combines: writes wrapped in every shape SQL allows, comments and
# separators that might hide a second statement, and harmless reads around them.
CORES = [
    *WRITES,
    "DELETE FROM todos",
    "UPDATE checkpoint SET sequence = 0",
    "INSERT INTO projection_versions VALUES ('x', 1)",
    "DROP TABLE users",
    "CHECKPOINT",
    "SET threads = 8",
    "ATTACH ':memory:' AS m",
    "CREATE TEMP TABLE t AS SELECT 1",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('DELETE FROM todos'))",
    "SELECT * FROM read_blob('projector-1.duckdb.wal')",
    "SELECT count(*) FROM todos",
    "SELECT 42",
    "FROM checkpoint",
]
WRAPS = [
    "{}",
    "WITH w AS ({}) SELECT * FROM w",
    "SELECT * FROM ({})",
    "SELECT ({}) AS v",
    "EXPLAIN {}",
    "{} UNION ALL SELECT 1",
]
GLUE = ["", ";", " -- c\n", " /* ; */ ", ";\n", "\t"]


def mixed_case(text: str, flips: list[bool]) -> str:
    """`text` with its letters' case flipped by the repeating pattern `flips`."""
    return "".join(
        c.upper() if f else c.lower() for c, f in zip(text, flips * len(text), strict=False)
    )


def _mix(cores: list[str], wrap: str, glue: list[str], flips: list[bool]) -> str:
    return mixed_case(glue[0].join(wrap.format(core) for core in cores) + glue[-1], flips)


MIXES = st.builds(
    _mix,
    cores=st.lists(st.sampled_from(CORES), min_size=1, max_size=3),
    wrap=st.sampled_from(WRAPS),
    glue=st.lists(st.sampled_from(GLUE), min_size=1, max_size=3),
    flips=st.lists(st.booleans(), min_size=1, max_size=7),
)  # SQL texts an attacker composes from the pieces above
