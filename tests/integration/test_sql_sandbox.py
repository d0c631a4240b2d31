"""Ad-hoc SQL over NATS: read-only by construction, bounded in time, concurrency and bytes.

Every attack is refused with a 4xx that says why, and afterwards every table, the
checkpoint, the settings and the attached databases are exactly as before; a replica
restarted on the same file is exactly current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from nats.aio.client import Client
from prometheus_client import REGISTRY

from common import bus
from common.envelope import Envelope, new_envelope
from common.errors import BadRequest, Invalid, Timeout, TooLarge, TooManyRequests, Unavailable
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from projector.readmodel import ReadModel
from projector.sql import run as sql_run
from tests.support.projections import TODO_ROWS, USER_ROWS, ask, fold, replica, sql, store
from tests.support.sql_attacks import ATTACKS, MIXES, STATE
from tests.support.waiting import eventually


async def state(nc: Client, settings: NatsSettings) -> list[list[list[Any]]]:
    """Everything a write could change, read through the sandbox itself."""
    return [await sql(nc, settings, statement) for statement in STATE]


@pytest.fixture
async def served(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> AsyncIterator[tuple[int, list[Envelope]]]:
    events = list(domain_events(300, lists=5, users=5))
    last = await store(nc, nats_settings, events)
    async with replica(nats_settings, tmp_path, sql_timeout_s=1.0, sql_max_rows=1000):
        yield last, events


async def test_every_attack_is_refused_with_a_reason_and_changes_nothing_even_after_restart(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(400, lists=5, users=5, seed=4))
    first = await store(nc, nats_settings, events[:300])
    async with replica(nats_settings, tmp_path, sql_timeout_s=1.0):
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint", first) == [[first]]
        before = await state(nc, nats_settings)
        for statement, error, reason in ATTACKS:
            with pytest.raises(error) as refused:
                await sql(nc, nats_settings, statement)
            assert reason in refused.value.message, (statement, refused.value.message)
        assert await state(nc, nats_settings) == before
    last = await store(nc, nats_settings, events[300:])
    async with replica(nats_settings, tmp_path):  # the same file, restarted
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint", last) == [[last]]
        todos, users = fold(events)
        assert {tuple(r) for r in await sql(nc, nats_settings, TODO_ROWS)} == todos
        assert {tuple(r) for r in await sql(nc, nats_settings, USER_ROWS)} == users


async def test_a_select_with_a_cte_answers_with_columns_and_a_row_limit(
    nc: Client, nats_settings: NatsSettings, served: tuple[int, list[Envelope]]
) -> None:
    answer = await ask(
        nc, nats_settings, "sql", "sql", served[0],
        sql="WITH r AS (SELECT range AS n FROM range(2000)) SELECT n, n * 2 AS twice FROM r",
    )  # fmt: skip
    result = answer["result"]
    assert result["columns"] == ["n", "twice"]
    assert len(result["rows"]) == 1000 and result["truncated"] is True
    assert result["truncated_by"] == "rows"
    assert answer["sequence"] >= served[0]


async def test_a_query_cannot_see_what_an_earlier_query_left_on_its_cursor(
    nc: Client, nats_settings: NatsSettings, served: tuple[int, list[Envelope]]
) -> None:
    with pytest.raises(Invalid):
        await sql(nc, nats_settings, "SET VARIABLE secret = 'x'")
    assert await sql(nc, nats_settings, "SELECT getvariable('secret')") == [[None]]
    tables = await sql(nc, nats_settings, "SELECT count(*) FROM duckdb_tables() WHERE temporary")
    assert tables == [[0]]


async def test_an_answer_over_the_byte_limit_is_cut_and_says_so(
    nc: Client, nats_settings: NatsSettings, served: tuple[int, list[Envelope]]
) -> None:
    answer = await ask(
        nc, nats_settings, "sql", "sql", sql="SELECT repeat('x', 2000) FROM range(2000)"
    )
    result = answer["result"]
    assert result["truncated"] is True and result["truncated_by"] == "bytes"
    assert 300 < len(result["rows"]) < 600  # under the row limit of 1,000
    assert result["max_bytes"] <= 1_000_000


async def test_a_single_row_over_the_byte_limit_is_a_413_at_once(
    nc: Client, nats_settings: NatsSettings, served: tuple[int, list[Envelope]]
) -> None:
    started = time.monotonic()
    with pytest.raises(TooLarge) as refused:
        await sql(nc, nats_settings, "SELECT repeat('x', 3000000) AS big")
    assert "over the" in refused.value.message and time.monotonic() - started < 3


async def test_a_todo_list_bigger_than_a_message_is_readable_and_marked_truncated(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, big_list("big", 4_500))
    async with replica(nats_settings, tmp_path):
        answer = await ask(nc, nats_settings, "todo_lists", "get", last, list_id="big")
    assert answer["truncated"]["field"] == "items" and answer["truncated"]["total"] == 4_500
    kept = answer["truncated"]["returned"]
    assert 1_000 < kept < 4_500 and len(answer["result"]["items"]) == kept
    assert answer["result"]["items"][0]["todo_id"] == "t0"  # the first ones, in order


async def test_slow_queries_past_the_slots_get_429_and_never_delay_applying_events(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(200, lists=5, users=5, seed=7))
    await store(nc, nats_settings, events[:100])
    async with replica(nats_settings, tmp_path, sql_timeout_s=2.0, sql_concurrency=2, sql_queue=2):
        slow = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
        flood = [asyncio.create_task(_outcome(sql(nc, nats_settings, slow))) for _ in range(20)]
        await held(4)  # the flood has arrived: 2 running and 2 waiting ...
        await refused(flood, 16)  # ... and the other 16 refused
        started = time.monotonic()
        last = await store(nc, nats_settings, events[100:])
        assert await sql_or_429(nc, nats_settings, "SELECT 1", last) in ("ok", "429")
        read = await ask(nc, nats_settings, "user_profiles", "list", last)
        assert read["sequence"] >= last and time.monotonic() - started < 3.0  # 9 s before
        outcomes = await asyncio.gather(*flood)
    assert set(outcomes) <= {"429", "time"} and outcomes.count("429") >= 16, outcomes


async def test_requests_waiting_for_min_seq_hold_their_places_and_the_next_gets_429_at_once(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await store(nc, nats_settings, domain_events(20, lists=2, users=2))
    async with replica(nats_settings, tmp_path, sql_timeout_s=2.0, sql_concurrency=1, sql_queue=2):
        never = 10**12
        waiting = [asyncio.create_task(_outcome(sql(nc, nats_settings, "SELECT 1", never)))
                   for _ in range(3)]  # fmt: skip
        await held(3)  # they have arrived
        started = time.monotonic()
        assert await sql_or_429(nc, nats_settings, "SELECT 1", 0) == "429"
        assert time.monotonic() - started < 2.0
        assert await asyncio.gather(*waiting) == ["504"] * 3
        assert await sql(nc, nats_settings, "SELECT 42") == [[42]]  # the places are free again


async def test_one_principal_cannot_lock_another_out_of_ad_hoc_sql(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await store(nc, nats_settings, domain_events(20, lists=2, users=2))
    async with replica(nats_settings, tmp_path, sql_timeout_s=3.0, sql_per_principal=4):
        endless = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
        flood = [asyncio.create_task(_outcome(as_principal(nc, nats_settings, "mallory", endless)))
                 for _ in range(10)]  # fmt: skip
        await held(4)  # the flood has arrived: mallory's 4 places ...
        await refused(flood, 6)  # ... and the 6 past them
        started = time.monotonic()
        assert await as_principal(nc, nats_settings, "alice", "SELECT 42") == [[42]]
        assert time.monotonic() - started < 2.0
        outcomes = await asyncio.gather(*flood)
    # 6 over mallory's 4 places at once; of the 4, one runs at a time (half the 2 slots)
    assert set(outcomes) == {"429", "time"} and outcomes.count("429") >= 6, outcomes


async def held(count: int, replica: str = "r1") -> None:
    """Until `count` ad-hoc queries hold a place on the in-process `replica` (its gauge)."""
    await _gauge("sql_queries_held", replica, count)


async def running_queries(count: int, replica: str = "r1") -> None:
    """Until `count` ad-hoc queries run on the in-process `replica`'s SQL threads."""
    await _gauge("sql_queries_running", replica, count)


async def _gauge(name: str, replica: str, count: int) -> None:
    async def value() -> float | None:
        return REGISTRY.get_sample_value(name, {"replica": replica})

    await eventually(value, lambda now: now == count, timeout=10)


async def refused(flood: list[asyncio.Task[str]], count: int) -> None:
    """Until `count` requests of `flood` have been answered 429 (the others still run)."""

    async def answered() -> int:
        return sum(1 for task in flood if task.done() and task.result() == "429")

    await eventually(answered, lambda done: done >= count, timeout=10)


async def as_principal(nc: Client, settings: NatsSettings, actor: str, text: str) -> Any:
    """Ad-hoc SQL as the gateway sends it for an authenticated subject; the rows."""
    request = QueryRequest(name="sql", params={"sql": text}, timeout_s=10, actor=actor)
    subject = Subjects(settings.prefix).query("sql")
    reply = await bus.request(nc, subject, msgspec.json.encode(request), 15, "projector")
    return msgspec.json.decode(reply)["result"]["rows"]


async def _outcome(query: Any) -> str:
    try:
        await query
    except TooManyRequests as exc:
        assert exc.detail["retry_after"] == 1
        return "429"
    except BadRequest as exc:
        assert exc.detail.get("limit") == "time", exc.message
        return "time"
    except Timeout:
        return "504"
    return "ok"


async def sql_or_429(nc: Client, settings: NatsSettings, text: str, min_seq: int) -> str:
    return await _outcome(sql(nc, settings, text, min_seq))


def big_list(list_id: str, todos: int) -> list[Envelope]:
    """`todos` todos of 200 characters each (the most the domain takes) added to one list."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return [
        new_envelope(
            "todo_list",
            list_id,
            n + 1,
            "todo_added",
            {"todo_id": f"t{n}", "text": f"{n:<6}".ljust(200, "x")},
            schema=2,
            occurred_at=now,
            command_id=f"c{n}",
        )
        for n in range(todos)
    ]


def test_a_query_whose_deadline_passed_before_it_started_is_still_stopped(tmp_path: Path) -> None:
    model = ReadModel(tmp_path / "late.duckdb")
    endless = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
    try:
        for late in (-1.0, 0.0, 0.001, 0.05):
            started = time.monotonic()
            with pytest.raises(BadRequest) as stopped:
                sql_run(model.con.cursor(), endless, started + late, 10, 10_000, 1.0)
            assert stopped.value.detail["limit"] == "time"
            assert time.monotonic() - started < 2.0, late
    finally:
        model.close()


async def test_a_rebuild_swap_stops_running_queries_instead_of_pausing_the_feed_for_them(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(300, lists=5, users=5, seed=8))
    async with replica(nats_settings, tmp_path, "sw", sql_timeout_s=30.0):
        await sql(nc, nats_settings, "SELECT 1", last)
        endless = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
        running = asyncio.create_task(sql(nc, nats_settings, endless))
        await running_queries(1, "sw")  # it runs
        started = time.monotonic()
        subject = Subjects(nats_settings.prefix).query("rebuild.sw")

        async def rebuild(name: str) -> Any:
            body = msgspec.json.encode(QueryRequest(name=name, params={"projections": []}))
            return msgspec.json.decode(await bus.request(nc, subject, body, 10, "rebuild"))

        await rebuild("start")
        done = await eventually(
            lambda: rebuild("status"), lambda s: s["result"]["state"] == "done", timeout=20
        )
        assert done["sequence"] == last and time.monotonic() - started < 10
        with pytest.raises(Unavailable) as stopped:
            await running
        assert "swapped" in stopped.value.message and stopped.value.detail["retry_after"] == 1
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint") == [[last]]


async def test_a_replica_stops_promptly_while_an_endless_query_runs(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(50, lists=2, users=2))
    async with replica(nats_settings, tmp_path, "stop", sql_timeout_s=60.0) as task:
        await sql(nc, nats_settings, "SELECT 1", last)
        endless = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
        running = asyncio.create_task(sql(nc, nats_settings, endless))
        await running_queries(1, "stop")  # it runs
        started = time.monotonic()
    assert task.done() and time.monotonic() - started < 5.0
    running.cancel()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModel]:
    """A read model with rows, attacked directly (no NATS) by generated statements."""
    model = ReadModel(tmp_path_factory.mktemp("mix") / "mix.duckdb")
    events = list(domain_events(300, lists=4, users=4, seed=11))
    model.apply(list(enumerate(events, start=1)), len(events))
    yield model
    model.close()


def fingerprint(model: ReadModel) -> list[Any]:
    return [model.con.execute(statement).fetchall() for statement in STATE]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MIXES)
def test_generated_mixes_change_nothing_at_the_projector_level(
    attacked: ReadModel, text: str
) -> None:
    before = fingerprint(attacked)
    try:
        sql_run(attacked.con.cursor(), text, time.monotonic() + 2, 100, 100_000, 2.0)
    except (BadRequest, Invalid, TooLarge) as refused:
        assert refused.message, text
    assert fingerprint(attacked) == before, text
    assert attacked.con.execute("SELECT sequence FROM checkpoint").fetchall() == [(300,)]


@pytest.mark.parametrize("route", ["sql", "todo_lists", "snapshot", "rebuild.r1"])
async def test_a_query_request_that_is_not_json_is_a_400_and_a_wrong_shape_a_422_naming_it(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, route: str
) -> None:
    subject = Subjects(nats_settings.prefix).query(route)
    async with replica(nats_settings, tmp_path):
        with pytest.raises(BadRequest, match="the query request is not JSON"):
            await bus.request(nc, subject, b"{not json", 15, "projector")
        with pytest.raises(Invalid, match="invalid query request") as wrong:
            await bus.request(nc, subject, b'{"name": "x", "min_seq": "soon"}', 15, "projector")
        assert wrong.value.detail["field"] == "min_seq"
