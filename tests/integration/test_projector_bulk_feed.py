"""A replica far behind catches up through a feed in a process of its own
(projector/feed_process.py) and applies every event once, whatever happens to that process;
then it follows the stream with its own feed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from common import envelope as codec
from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from projector import main as projector_main
from projector import rebuild
from projector.feed_process import FeedProcess
from projector.prestage import Received
from projector.readmodel import ReadModel
from tests.support.projections import ask, assert_folded, replica, store
from tests.support.waiting import eventually, soon

# far behind: 2,000 events, more than 500; catch-up batches of 100 to 300, cut by size
OPTIONS: dict[str, Any] = {
    "batch_size": 20,
    "batch_ms": 10_000,
    "catchup_batch_size": 100,
    "catchup_batch_max": 300,
    "catchup_process_above": 500,
}


class Noted:
    """The feed processes a replica started, and the size of every batch it applied;
    `at_second` runs (on the applying thread) while the second batch is applied."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, at_second: Callable[[Noted], None] | None = None
    ) -> None:
        self.started: list[FeedProcess] = []
        self.sizes: list[int] = []
        self.staged = 0  # batches the feed process staged (projector/prestage.py)
        real_apply, real_start, noted = projector_main.apply, FeedProcess.start, self

        async def start(feed: FeedProcess) -> FeedProcess:
            noted.started.append(feed)
            return await real_start(feed)

        def apply(model: ReadModel, deliveries: list[Any], *args: Any, **kwargs: Any) -> Any:
            noted.sizes.append(len(deliveries))
            noted.staged += isinstance(kwargs.get("decoded"), Received)
            if len(noted.sizes) == 2 and at_second is not None:  # mid-catch-up
                at_second(noted)
            return real_apply(model, deliveries, *args, **kwargs)

        monkeypatch.setattr(FeedProcess, "start", start)
        monkeypatch.setattr(projector_main, "apply", apply)


async def test_a_replica_far_behind_catches_up_through_a_feed_process_then_follows_with_its_own(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(domain_events(2_100, lists=100, users=300, seed=7))
    last = await store(nc, nats_settings, events[:2_000])
    noted = Noted(monkeypatch)
    async with replica(nats_settings, tmp_path, **OPTIONS):
        await assert_folded(nc, nats_settings, events[:2_000], last)
        assert len(noted.started) == 1
        assert sum(noted.sizes) == 2_000  # each event applied once
        assert max(noted.sizes) == 300  # the process's batches grew with the aggregates too
        assert noted.staged >= 1  # and it staged some of them itself (the others: balanced)
        live = len(noted.sizes)
        last = await store(nc, nats_settings, events[2_000:])  # live: the replica's own feed
        await assert_folded(nc, nats_settings, events, last)
        assert sum(noted.sizes[live:]) == 100 and len(noted.started) == 1
    assert _exitcode(noted.started[0]) == 0  # the feed process ended by itself, not killed
    with pytest.raises(NotFoundError):  # and deleted its consumer
        await nc.jetstream().consumer_info(nats_settings.stream, "projector-r1-bulk")


async def test_a_feed_process_killed_mid_catch_up_leaves_the_replica_catching_up_on_its_own(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(domain_events(2_000, lists=100, users=300, seed=8))
    last = await store(nc, nats_settings, events)
    noted = Noted(monkeypatch, lambda n: os.kill(_pid(n.started[-1]), signal.SIGKILL))
    async with replica(nats_settings, tmp_path, **OPTIONS):
        await assert_folded(nc, nats_settings, events, last)
    assert len(noted.started) == 1  # not started again: the rest in the replica's own feed
    assert _exitcode(noted.started[0]) == -signal.SIGKILL
    with pytest.raises(NotFoundError):  # its consumer deleted for it (verify10 F3)
        await nc.jetstream().consumer_info(nats_settings.stream, "projector-r1-bulk")
    assert sum(noted.sizes) == 2_000  # nothing the dead process had sent was applied twice


async def test_a_replica_stopped_while_a_feed_process_catches_up_ends_it(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(domain_events(2_000, lists=100, users=300, seed=9))
    await store(nc, nats_settings, events)
    noted = Noted(monkeypatch)
    async with replica(nats_settings, tmp_path, **OPTIONS) as task:
        await soon(lambda: len(noted.sizes) >= 2, timeout=20)  # mid-catch-up
    assert task.done() and not task.cancelled()
    assert len(noted.started) == 1 and _exitcode(noted.started[0]) == 0  # ended, not killed


def _pid(feed: FeedProcess) -> int:
    assert feed.process is not None
    return feed.process.pid


def _exitcode(feed: FeedProcess) -> int | None:
    assert feed.process is not None
    return feed.process.poll()


@pytest.mark.parametrize("consumer", ["projector-r1-bulk", "projector-r1"])
async def test_a_consumer_deleted_mid_catch_up_is_made_again_from_the_checkpoint(
    nc: Client,
    nats_settings: NatsSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    consumer: str,
) -> None:
    # verify10 F2: the feed then waited forever, without a word
    events = list(domain_events(2_000, lists=100, users=300, seed=10))
    last = await store(nc, nats_settings, events)
    loop, js = asyncio.get_running_loop(), nc.jetstream()

    def delete(_: Noted) -> None:  # from outside, while the replica applies a batch
        gone = js.delete_consumer(nats_settings.stream, consumer)
        assert asyncio.run_coroutine_threadsafe(gone, loop).result(10)

    noted = Noted(monkeypatch, delete)
    bulk = consumer.endswith("-bulk")
    async with replica(
        nats_settings, tmp_path, **{**OPTIONS, "catchup_process_above": 500 if bulk else 0}
    ):
        await assert_folded(nc, nats_settings, events, last)
    assert sum(noted.sizes) == 2_000  # each event applied once
    assert len(noted.started) == (1 if bulk else 0)


async def test_a_rebuild_whose_feed_process_dies_goes_on_in_its_own_process(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # verify10b N2: the rebuild failed (at start: the replica halted)
    events = list(domain_events(2_000, lists=100, users=300, seed=11))
    last = await store(nc, nats_settings, events)
    async with replica(nats_settings, tmp_path, **OPTIONS):
        await assert_folded(nc, nats_settings, events, last)
        noted = Noted(monkeypatch, lambda n: os.kill(_pid(n.started[-1]), signal.SIGKILL))
        monkeypatch.setattr(rebuild, "apply", projector_main.apply)  # noted, as the replica's
        status = await ask(nc, nats_settings, "rebuild.r1", "start", projections=["todo_lists"])
        assert status["result"]["state"] == "running"
        await eventually(
            lambda: ask(nc, nats_settings, "rebuild.r1", "status", projections=[]),
            lambda answer: answer["result"]["state"] in ("done", "failed"),
        )
        assert (await ask(nc, nats_settings, "rebuild.r1", "status"))["result"]["state"] == "done"
        assert len(noted.started) == 1 and _exitcode(noted.started[0]) == -signal.SIGKILL
        await assert_folded(nc, nats_settings, events, last)


async def test_poison_met_by_a_staging_feed_process_is_dead_lettered_as_in_the_replica(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(domain_events(2_000, lists=100, users=300, seed=10))
    first = next(e for e in events if e.aggregate_type == "todo_list")
    repeat = codec.new_envelope(  # version 1 of a list again, around the writer: refused
        first.aggregate_type, first.aggregate_id, 1, "todo_added",
        {"todo_id": "again", "text": "again"}, schema=2, occurred_at=first.occurred_at,
    )  # fmt: skip
    await store(nc, nats_settings, events[:700])
    junk = await nc.jetstream().publish(
        Subjects(nats_settings.prefix).events("todo_list", "j"), b"{"
    )
    last = await store(nc, nats_settings, [*events[700:1_400], repeat, *events[1_400:]])
    noted = Noted(monkeypatch)
    own = {**OPTIONS, "catchup_process_above": 0}  # decoding every batch itself
    async with (
        replica(nats_settings, tmp_path / "bulk", **OPTIONS),
        replica(nats_settings, tmp_path / "own", name="r2", **own),
    ):
        await soon(lambda: sum(noted.sizes) == 2 * last, timeout=30)
    assert noted.staged >= 1
    found = []
    for directory, name in ((tmp_path / "bulk", "r1"), (tmp_path / "own", "r2")):
        model = ReadModel(directory / f"{name}.duckdb")
        assert model.checkpoint == last
        found.append(
            [
                model.con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
                for table, columns in (
                    ("dead_letters", "sequence, projection"),
                    ("todo_lists", "*"),
                    ("users", "*"),
                    ("aggregate_states", "*"),
                )
            ]
        )
        model.close()
    assert found[0] == found[1]
    assert found[0][0] == [(junk.seq, "*"), (1_402, "*")]
