"""Replicas over a real nats-server: the fold oracle, convergence, rebuild, snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import msgspec
import pytest
from nats.aio.client import Client

from common import bus
from common.errors import Timeout
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from examples.todo.projections import todo_lists
from projector.feed_process import FeedProcess
from projector.readmodel import ReadModel
from tests.support.projections import (
    TODO_ROWS,
    ask,
    assert_folded,
    replica,
    sql,
    store,
)
from tests.support.waiting import eventually


async def test_read_model_equals_a_fold_of_every_event_and_checkpoint_is_the_last_sequence(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(3_000, lists=20, users=30))
    last = await store(nc, nats_settings, events[:1_000])
    async with replica(nats_settings, tmp_path):
        last = await store(nc, nats_settings, events[1_000:])  # live, after a catch-up
        totals = await assert_folded(nc, nats_settings, events, last)
        assert totals["commands"] == len({e.metadata.command_id for e in events})
        checkpoint = await sql(nc, nats_settings, "SELECT sequence FROM checkpoint", last)
        assert checkpoint == [[last]]


async def test_two_replicas_converge_to_the_same_rows(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(2_000, lists=10, users=10, seed=7))
    async with replica(nats_settings, tmp_path, "a"), replica(nats_settings, tmp_path, "b"):
        last = await store(nc, nats_settings, events)
        answers = [
            await sql(nc, nats_settings, TODO_ROWS + " ORDER BY ALL", last) for _ in range(8)
        ]
    assert all(rows == answers[0] for rows in answers)
    files = [ReadModel(tmp_path / f"{name}.duckdb") for name in ("a", "b")]
    tables = [m.con.execute(f"{TODO_ROWS} ORDER BY ALL").fetchall() for m in files]
    assert tables[0] == tables[1] and len(tables[0]) > 100
    assert [m.checkpoint for m in files] == [last, last]


@pytest.mark.parametrize("process_above", [0, 500], ids=["in process", "feed process"])
async def test_rebuild_produces_the_same_rows_as_incremental_application(
    nc: Client,
    nats_settings: NatsSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    process_above: int,
) -> None:
    events = list(domain_events(2_000, lists=10, users=10, seed=3))
    everything = "SELECT * FROM {} ORDER BY ALL"
    tables = ("todos", "users", "event_counts", "todo_changes")
    started: list[FeedProcess] = []  # far behind (2,000 > 500): the rebuild's feed process
    real = FeedProcess.start

    async def noted(feed: FeedProcess) -> FeedProcess:
        started.append(feed)
        return await real(feed)

    monkeypatch.setattr(FeedProcess, "start", noted)
    options = {"catchup_process_above": process_above, "batch_size": 100, "catchup_batch_size": 300}
    async with replica(nats_settings, tmp_path, "r", **options):
        last = await store(nc, nats_settings, events)
        before = [await sql(nc, nats_settings, everything.format(t), last) for t in tables]
        subject = Subjects(nats_settings.prefix).query("rebuild.r")

        async def rebuild(name: str) -> dict[str, object]:
            body = msgspec.json.encode(QueryRequest(name=name, params={"projections": []}))
            reply = await bus.request(nc, subject, body, 10, "projector")
            result: dict[str, object] = msgspec.json.decode(reply)["result"]
            return result

        await rebuild("start")
        status = await eventually(lambda: rebuild("status"), lambda s: s["state"] == "done")
        assert status["done"] == last
        after = [await sql(nc, nats_settings, everything.format(t), last) for t in tables]
    assert after == before
    assert len(started) == (1 if process_above else 0)


async def test_a_changed_projection_version_is_rebuilt_at_start(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(1_500, lists=10, users=10, seed=5))
    last = await store(nc, nats_settings, events)
    async with replica(nats_settings, tmp_path, "v"):
        expected = await sql(nc, nats_settings, "SELECT * FROM todos ORDER BY ALL", last)
    old = duckdb.connect(str(tmp_path / "v.duckdb"))
    old.execute("UPDATE projection_versions SET version = 1 WHERE name = 'todo_lists'")
    old.execute("DELETE FROM todo_lists")  # what an old version left behind
    old.close()
    async with replica(nats_settings, tmp_path, "v"):
        # Answered from the old file while the rebuild runs, from the new one after the swap.
        await eventually(
            lambda: sql(nc, nats_settings, "SELECT * FROM todos ORDER BY ALL", last),
            lambda rows: rows == expected,
        )
        versions = await sql(nc, nats_settings, "SELECT count(*) FROM projection_versions "
                             "WHERE name = 'todo_lists' AND version = "
                             f"{todo_lists.projection.version}")  # fmt: skip
        assert versions == [[1]]


@pytest.mark.parametrize("process_above", [0, 500], ids=["in process", "feed process"])
async def test_a_rebuild_at_start_of_a_file_behind_the_stream_loses_no_event_of_the_others(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, process_above: int
) -> None:
    # verify10b N1: the rebuild applied past the file's checkpoint, then copied the other
    # projections' tables at it: they never got the events between (then dead letters)
    events = list(domain_events(3_000, lists=30, users=30, seed=6))
    options = {"batch_size": 100, "catchup_batch_size": 300, "catchup_process_above": process_above}
    first = await store(nc, nats_settings, events[:1_550])
    async with replica(nats_settings, tmp_path, "v", **options):
        await assert_folded(nc, nats_settings, events[:1_550], first)
    last = await store(nc, nats_settings, events[1_550:])  # while the replica is down
    old = duckdb.connect(str(tmp_path / "v.duckdb"))
    old.execute("UPDATE projection_versions SET version = 1 WHERE name = 'todo_lists'")
    old.close()
    async with replica(nats_settings, tmp_path, "v", **options):
        await assert_folded(nc, nats_settings, events, last)
        assert await sql(nc, nats_settings, "SELECT count(*) FROM dead_letters", last) == [[0]]


async def test_a_snapshot_opens_in_plain_duckdb_while_the_projector_writes(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(3_000, lists=10, users=10, seed=9))
    async with replica(nats_settings, tmp_path, "s"):
        writing = asyncio.create_task(store(nc, nats_settings, events))
        taken = (await ask(nc, nats_settings, "snapshot", "snapshot"))["result"]
        await writing
    copy = duckdb.connect(taken["path"], read_only=True)
    (checkpoint,) = copy.execute("SELECT sequence FROM checkpoint").fetchall()[0]
    (counted,) = copy.execute("SELECT coalesce(sum(events), 0) FROM event_counts").fetchall()[0]
    assert checkpoint == taken["sequence"] == counted  # consistent at a batch boundary


async def test_a_poison_event_is_skipped_by_default_and_halts_when_set_to_halt(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(10, lists=2, users=2, seed=2))
    await store(nc, nats_settings, events[:5])
    await nc.jetstream().publish(Subjects(nats_settings.prefix).events("todo_list", "x"), b"{oops")
    last = await store(nc, nats_settings, events[5:])
    async with replica(nats_settings, tmp_path, "skip"):
        dead = await sql(nc, nats_settings, "SELECT sequence FROM dead_letters", last)
        assert dead == [[6]]
    async with replica(nats_settings, tmp_path, "halt", on_poison="halt"):
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint", 5) == [[5]]
        body = msgspec.json.encode(QueryRequest(name="totals", min_seq=last, timeout_s=0.3))
        subject = Subjects(nats_settings.prefix).query("analytics")
        with pytest.raises(Timeout) as waited:
            await bus.request(nc, subject, body, 5, "projector")
        assert waited.value.detail["sequence"] == 5  # halted before the poison, still serving


async def test_a_rebuild_killed_mid_way_leaves_nothing_after_the_next_start(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    """A kill -9 mid-rebuild runs no cleanup: its file (a copy of the read model's size)
    stayed until the next rebuild. At start no rebuild runs, so it is deleted."""
    last = await store(nc, nats_settings, domain_events(50, lists=2, users=2, seed=9))
    left = [tmp_path / "r1.rebuild.duckdb", tmp_path / "r1.rebuild.duckdb.wal"]
    for file in left:
        file.write_bytes(b"half a rebuild")
    async with replica(nats_settings, tmp_path):
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint", last) == [[last]]
        assert not any(file.exists() for file in left)
    assert (tmp_path / "r1.duckdb").exists()
