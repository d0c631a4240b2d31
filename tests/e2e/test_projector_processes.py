"""Projector replicas as real processes: kill -9 while events flow (and while a feed process
catches up for it), read-your-writes over HTTP whichever replica answers, SQL refusals as
HTTP 4xx."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from examples.todo.history import domain_events
from tests.support.processes import Service, children, run_cli
from tests.support.projections import TODO_ROWS, USER_ROWS, fold, sql, store
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


async def test_killing_the_projector_at_random_points_loses_and_repeats_nothing(
    nc: Client, nats_settings: NatsSettings, service_env: dict[str, str], tmp_path: Path
) -> None:
    events = list(domain_events(12_000, lists=40, users=40, seed=11))
    env = {**service_env, "IRONSTAR_PROJECTOR_BATCH_SIZE": "200"}
    projector = Service("projector", env, tmp_path)
    await asyncio.to_thread(projector.start)
    rnd = random.Random(4)
    try:
        restarted = asyncio.Semaphore(0)

        async def flow() -> int:
            last = 0
            for n, offset in enumerate(range(0, len(events), 300)):
                if n and n % 4 == 0:  # every 4 chunks, wait for the next kill: all 10 land mid-flow
                    await restarted.acquire()
                last = await store(nc, nats_settings, events[offset : offset + 300])
                await asyncio.sleep(0.15)  # pace the flow (load shaping), so kills land mid-batch
            return last

        flowing = asyncio.create_task(flow())
        for _ in range(10):
            await asyncio.sleep(rnd.uniform(0.05, 0.4))  # a random point in the flow to kill at
            projector.kill()
            await asyncio.to_thread(projector.start)
            restarted.release()
        last = await flowing
        todos, users = fold(events)
        todo_rows = await sql(nc, nats_settings, TODO_ROWS, last)
        user_rows = await sql(nc, nats_settings, USER_ROWS, last)
        assert {tuple(r) for r in todo_rows} == todos
        assert {tuple(r) for r in user_rows} == users
        assert (len(todo_rows), len(user_rows)) == (len(todos), len(users))  # one row per key
        counted = await sql(nc, nats_settings, "SELECT sum(events) FROM event_counts", last)
        assert counted == [[len(events)]]
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint") == [[last]]
    finally:
        projector.stop()


@pytest.fixture
def stack(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    started = [Service("writer", service_env, tmp_path).launch()]  # all side by side
    for name in ("p1", "p2"):
        env = {
            **service_env,
            "IRONSTAR_PROJECTOR_NAME": name,
            "IRONSTAR_PROJECTOR_SQL_TIMEOUT_S": "1",
        }
        started.append(Service("projector", env, tmp_path).launch())
    started.append(Service("gateway", service_env, tmp_path).launch())
    for service in started:
        service.ready()
    yield f"http://127.0.0.1:{service_env['IRONSTAR_GATEWAY_PORT']}"
    for service in reversed(started):
        service.stop()


@pytest.fixture
async def http(stack: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack, timeout=10) as client:
        yield client


async def test_a_query_with_min_seq_sees_the_command_whichever_replica_answers(
    http: httpx.AsyncClient,
) -> None:
    for number in range(20):
        sent = await http.post(
            "/api/commands/todo_list/ryw",
            json={"type": "add_todo", "payload": {"todo_id": f"t{number}", "text": f"n{number}"}},
        )
        assert sent.status_code == 200, sent.text
        sequence = sent.json()["sequence"]
        read = await http.get("/api/todo-lists/ryw", params={"min_seq": sequence})
        assert read.status_code == 200, read.text
        assert [item["todo_id"] for item in read.json()["result"]["items"]][-1] == f"t{number}"
    ahead = await http.get("/api/todo-lists/ryw", params={"min_seq": sequence + 1000})
    assert ahead.status_code == 504 and ahead.json()["sequence"] == sequence


async def test_sql_over_http_refuses_with_4xx_and_answers_csv(http: httpx.AsyncClient) -> None:
    refusals = {
        "SELECT * FROM read_csv('/etc/passwd')": 422,  # not on the allow-list
        "COPY (SELECT 1) TO '/tmp/x.csv'": 422,
        "SELECT 1; SELECT 2": 422,
        "SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b": 400,
    }
    for statement, status in refusals.items():
        answer = await http.post("/api/sql", json={"sql": statement})
        assert answer.status_code == status, answer.text
        assert answer.json()["message"]
    csv = await http.post("/api/sql", params={"format": "csv"}, json={"sql": "SELECT 1 AS one"})
    assert csv.status_code == 200 and csv.text.splitlines() == ["one", "1"]


def test_the_cli_queries_snapshots_and_rebuilds_a_running_projector(
    stack: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    added = httpx.post(
        f"{stack}/api/commands/todo_list/cli",
        json={"type": "add_todo", "payload": {"todo_id": "t", "text": "from the cli"}},
    )
    sequence = str(added.json()["sequence"])
    query = run_cli(service_env, "query", "SELECT text FROM todos", "--csv", "--min-seq", sequence)
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines() == ["text", "from the cli"]
    aligned = run_cli(service_env, "query", "SELECT 1 AS one, 'x' AS letter")
    assert aligned.stdout.splitlines()[0].split() == ["one", "letter"]
    refused = run_cli(service_env, "query", "COPY todos TO '/tmp/x.csv'")
    assert refused.returncode == 1 and "COPY" in refused.stderr
    copy = tmp_path / "snap.duckdb"
    snapshot = run_cli(service_env, "snapshot", "--output", str(copy))
    assert snapshot.returncode == 0, snapshot.stderr
    assert duckdb.connect(str(copy), read_only=True).execute(
        "SELECT text FROM todos"
    ).fetchall() == [("from the cli",)]
    rebuilt = run_cli(service_env, "rebuild", "--replica", "p1", "--projection", "todo_lists")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"up to sequence {sequence}" in rebuilt.stdout and "events" in rebuilt.stderr


async def test_a_killed_projector_leaves_no_feed_process_behind(
    nc: Client, nats_settings: NatsSettings, service_env: dict[str, str], tmp_path: Path
) -> None:
    events = list(domain_events(3_000, lists=100, users=300, seed=12))
    await store(nc, nats_settings, events)
    env = {  # far behind: catching up through a feed process, in batches of 100
        **service_env,
        "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE": "500",
        "IRONSTAR_PROJECTOR_CATCHUP_BATCH_SIZE": "100",
        "IRONSTAR_PROJECTOR_CATCHUP_BATCH_MAX": "100",
        "IRONSTAR_PROJECTOR_BATCH_SIZE": "20",
    }
    projector = Service("projector", env, tmp_path).launch()
    assert projector.process is not None
    pid, spawned = projector.process.pid, set[int]()
    alive = lambda: {p for p in spawned if Path(f"/proc/{p}").exists()}  # noqa: E731
    try:
        until(lambda: bool(children(pid)), 30, lambda: projector.log.read_text()[-2000:])
        spawned = children(pid)
        projector.kill()  # kill -9: no goodbye; its feed process reads end-of-file
        assert len(spawned) == 1  # the feed process alone (no helper process lives on)
        until(lambda: not alive(), 10, lambda: f"still running: {alive()}")
    finally:
        projector.kill()
        for leftover in alive():
            os.kill(leftover, signal.SIGKILL)
