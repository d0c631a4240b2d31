"""Catching up cheaply changes nothing applied: a catch-up batch runs with cyclic
collection paused (projector/collector.py) and restores it however the batch ends, the
domain events decoding built (common.envelope.decode_checked) stage exactly what the
staging's own conversion would, and catch-up batches that grow with the aggregates
(projector/feed.py: `catchup_size`) apply every event once, never past their maximum."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from common import catalogue
from common import envelope as codec
from common.envelope import Envelope
from common.settings import NatsSettings
from examples.todo.history import domain_events
from projector import decoding
from projector import main as projector_main
from projector import replica as replicas
from projector.readmodel import ReadModel
from projector.readmodel_isolation import DeadLetter, Poisoned
from tests.integration.test_projector_apply import _deliveries, _event
from tests.support.projections import assert_folded, replica, store


class Watched(ReadModel):
    """A read model that notes whether cyclic collection was on for each batch."""

    collecting: list[bool]

    def apply(self, *args: Any, **kwargs: Any) -> list[DeadLetter]:
        self.collecting = [*getattr(self, "collecting", []), gc.isenabled()]
        return super().apply(*args, **kwargs)


def _history(count: int) -> list[Envelope]:
    app = catalogue.current().app
    assert app.events is not None
    return list(app.events(count, 1))


def test_a_catch_up_batch_is_applied_without_cyclic_collection_and_a_live_one_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoding, "QUIET_ABOVE", 3)
    model = Watched(tmp_path / "r.duckdb")
    events = _history(6)
    replicas.apply(model, _deliveries(events[:4]), 4, False)  # catching up: more than 3
    replicas.apply(model, _deliveries(events[4:], 5), 6, False)  # live: 2
    assert model.collecting == [False, True]
    assert gc.isenabled() and model.checkpoint == 6


def test_a_catch_up_batch_that_halts_on_a_poisoned_event_leaves_collection_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoding, "QUIET_ABOVE", 1)
    model = ReadModel(tmp_path / "r.duckdb")
    batch = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("todo_list", "l", 1, "todo_added", todo_id="u", text="again"),  # version 1 twice
    ]
    with pytest.raises(Poisoned, match="next is 2"):
        replicas.apply(model, _deliveries(batch), 2, True)
    assert gc.isenabled() and model.checkpoint == 1


def test_the_domain_events_built_by_decoding_stage_what_staging_would_build_itself(
    tmp_path: Path,
) -> None:
    old = codec.new_envelope(  # an older schema: upcast before it is staged
        "todo_list",
        "old",
        1,
        "todo_added",
        {"todo_id": "t", "title": "from schema 1"},
        occurred_at="2026-01-01T00:00:00.000Z",
    )
    events = [*_history(3000), old]
    deliveries = _deliveries(events)
    handed = ReadModel(tmp_path / "handed.duckdb")
    assert replicas.apply(handed, deliveries, len(events), True) == []
    own = ReadModel(tmp_path / "own.duckdb")  # plain envelopes: staging converts each itself
    plain = [(sequence, codec.decode(body)) for sequence, _, body in deliveries]
    assert own.apply(plain, len(events), halt=True) == []
    for table in ("todos", "users", "stream_counts", "aggregate_pending"):
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert handed.con.execute(query).fetchall() == own.con.execute(query).fetchall(), table
    todo = handed.con.execute("SELECT text FROM todos WHERE list_id = 'old'").fetchall()
    assert todo == [("from schema 1",)]


async def test_a_replica_catching_up_with_decoding_ahead_applies_every_event_once_in_order(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(1_000, lists=10, users=10, seed=3))
    repeat = codec.new_envelope(  # version 1 of a list again, around the writer: refused
        events[0].aggregate_type, events[0].aggregate_id, 1, "todo_added",
        {"todo_id": "again", "text": "again"}, schema=2, occurred_at=events[0].occurred_at,
    )  # fmt: skip
    stored = [*events[:500], repeat, *events[500:800]]
    last = await store(nc, nats_settings, stored)
    options = {"batch_size": 20, "catchup_batch_size": 100}  # catch-up batches, decoded ahead
    async with replica(nats_settings, tmp_path, **options):
        last = await store(nc, nats_settings, events[800:])  # live, after the catch-up
        await assert_folded(nc, nats_settings, events, last)
        assert gc.isenabled()  # the catch-up's pause was left before the last batch
    model = ReadModel(tmp_path / "r1.duckdb")
    assert model.checkpoint == last
    letters = model.con.execute("SELECT sequence, projection FROM dead_letters").fetchall()
    assert letters == [(501, "*")]


async def test_a_catch_up_writes_the_states_with_its_last_batch_so_the_live_tail_starts_clean(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(600, lists=10, users=10, seed=7))
    last = await store(nc, nats_settings, events)
    async with replica(nats_settings, tmp_path, batch_size=20, catchup_batch_size=100):
        await assert_folded(nc, nats_settings, events, last)
    model = ReadModel(tmp_path / "r1.duckdb")
    pending = model.con.execute("SELECT count(*) FROM aggregate_pending").fetchall()[0][0]
    assert pending <= 20  # at most the live-sized batches after the catch-up's last
    written = model.con.execute("SELECT count(*) FROM aggregate_states").fetchall()[0][0]
    assert written == len({(e.aggregate_type, e.aggregate_id) for e in events})


def test_a_read_models_wal_is_folded_into_its_file_when_a_catch_up_ends(tmp_path: Path) -> None:
    model = ReadModel(tmp_path / "r.duckdb")
    replicas.apply(model, _deliveries(_history(300)), 300, True)
    wal = tmp_path / "r.duckdb.wal"
    assert wal.exists() and wal.stat().st_size > 0  # under the 256 MB threshold: kept
    model.checkpoint_wal()
    assert not wal.exists() or wal.stat().st_size == 0
    assert model.checkpoint == 300


async def test_catch_up_batches_grow_with_the_aggregates_to_their_maximum_and_apply_every_event(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(domain_events(2_000, lists=100, users=300, seed=5))  # ~320 aggregates
    last = await store(nc, nats_settings, events)
    sizes: list[int] = []
    real = projector_main.apply

    def noted(model: ReadModel, deliveries: list[Any], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(deliveries))
        return real(model, deliveries, *args, **kwargs)

    monkeypatch.setattr(projector_main, "apply", noted)
    # a long linger: a catch-up batch is cut by its size (or an empty stream), not by time
    options = {"batch_size": 20, "batch_ms": 10_000, "catchup_batch_size": 100}
    async with replica(nats_settings, tmp_path, catchup_batch_max=300, **options):
        await assert_folded(nc, nats_settings, events, last)
    assert sum(sizes) == len(events)  # each event applied once
    assert sizes[0] == 100  # no aggregate known yet: the floor
    assert max(sizes) == 300  # 2 x the aggregates known, cut at the maximum
