"""Ad-hoc SQL over NATS: every attack refused with a 4xx that says why; serving goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.errors import BadRequest, Invalid
from common.settings import NatsSettings
from examples.todo.history import domain_events
from tests.support.projections import ask, replica, sql, store

ATTACKS = [
    ("SELECT * FROM read_csv('/etc/passwd')", BadRequest, "access is disabled"),
    ("SELECT content FROM read_text('/etc/passwd')", BadRequest, "access is disabled"),
    ("SELECT * FROM read_blob('/etc/passwd')", BadRequest, "access is disabled"),
    ("SELECT * FROM glob('/etc/*')", BadRequest, "access is disabled"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", BadRequest, "disabled"),
    ("COPY (SELECT * FROM todos) TO '/tmp/stolen.csv'", Invalid, "COPY"),
    ("EXPORT DATABASE '/tmp/stolen'", Invalid, "EXPORT"),
    ("ATTACH '/tmp/other.duckdb' AS other", Invalid, "ATTACH"),
    ("ATTACH ':memory:' AS scratch", Invalid, "ATTACH"),
    ("INSTALL httpfs", Invalid, "LOAD"),
    ("LOAD httpfs", Invalid, "LOAD"),
    ("SET threads = 64", Invalid, "SET"),
    ("SET VARIABLE x = 1", Invalid, "cannot be changed"),
    ("RESET threads", Invalid, "SET"),
    ("PRAGMA show_tables", Invalid, "PRAGMA"),
    ("CALL pragma_version()", Invalid, "CALL"),
    ("SELECT 1; SELECT 2", Invalid, "exactly one statement"),
    ("SELECT 1; DROP TABLE todos", Invalid, "exactly one statement"),
    ("DELETE FROM todos", Invalid, "read-only"),
    ("UPDATE checkpoint SET sequence = 0", Invalid, "read-only"),
    ("INSERT INTO users VALUES ('x', 'x', 'x', true, now(), now(), 1)", Invalid, "read-only"),
    ("CREATE TABLE evil AS SELECT 1", Invalid, "read-only"),
    ("DROP TABLE todos", Invalid, "read-only"),
    ("CHECKPOINT", Invalid, "read-only"),
    ("SELECT * FROM query('DROP TABLE todos')", BadRequest, "failed"),
    ("SELEC nothing", Invalid, "does not parse"),
    (
        "SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b",
        BadRequest,
        "longer than",
    ),
]


@pytest.fixture
async def served(nc: Client, nats_settings: NatsSettings, tmp_path: Path) -> AsyncIterator[int]:
    last = await store(nc, nats_settings, domain_events(300, lists=5, users=5))
    async with replica(nats_settings, tmp_path, sql_timeout_s=1.0, sql_max_rows=50):
        yield last


async def test_the_sandbox_refuses_every_attack_with_a_reason_and_keeps_serving(
    nc: Client, nats_settings: NatsSettings, served: int
) -> None:
    for statement, error, reason in ATTACKS:
        with pytest.raises(error) as refused:
            await sql(nc, nats_settings, statement)
        assert reason in refused.value.message, (statement, refused.value.message)
        assert await sql(nc, nats_settings, "SELECT count(*) FROM todos", served) != [[0]]
    assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint") == [[served]]


async def test_a_select_with_a_cte_answers_with_columns_and_a_row_limit(
    nc: Client, nats_settings: NatsSettings, served: int
) -> None:
    answer = await ask(
        nc, nats_settings, "sql", "sql", served,
        sql="WITH r AS (SELECT range AS n FROM range(100)) SELECT n, n * 2 AS twice FROM r",
    )  # fmt: skip
    result = answer["result"]
    assert result["columns"] == ["n", "twice"]
    assert len(result["rows"]) == 50 and result["truncated"] is True
    assert answer["sequence"] >= served
