"""Catching up cheaply changes nothing applied: a catch-up batch runs with cyclic
collection paused (projector/collector.py) and restores it however the batch ends, and the
domain events decoding built (common.envelope.decode_checked) stage exactly what the
staging's own conversion would."""

from __future__ import annotations

import gc
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from common import catalogue
from common import envelope as codec
from common.envelope import Envelope
from projector import replica
from projector.readmodel import ReadModel
from projector.readmodel_isolation import DeadLetter, Poisoned
from tests.integration.test_projector_apply import _deliveries, _event


class Watched(ReadModel):
    """A read model that notes whether cyclic collection was on for each batch."""

    collecting: list[bool]

    def apply(  # type: ignore[override]
        self,
        events: Sequence[tuple[int, Envelope]],
        last_sequence: int,
        dead: Sequence[DeadLetter] = (),
        halt: bool = False,
        only: Collection[str] | None = None,
        subjects: Mapping[int, str] | None = None,
        typed: Mapping[int, Any] | None = None,
    ) -> list[DeadLetter]:
        self.collecting = [*getattr(self, "collecting", []), gc.isenabled()]
        return super().apply(events, last_sequence, dead, halt, only, subjects, typed)


def _history(count: int) -> list[Envelope]:
    app = catalogue.current().app
    assert app.events is not None
    return list(app.events(count, 1))


def test_a_catch_up_batch_is_applied_without_cyclic_collection_and_a_live_one_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica, "QUIET_ABOVE", 3)
    model = Watched(tmp_path / "r.duckdb")
    events = _history(6)
    replica.apply(model, _deliveries(events[:4]), 4, False)  # catching up: more than 3
    replica.apply(model, _deliveries(events[4:], 5), 6, False)  # live: 2
    assert model.collecting == [False, True]
    assert gc.isenabled() and model.checkpoint == 6


def test_a_catch_up_batch_that_halts_on_a_poisoned_event_leaves_collection_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica, "QUIET_ABOVE", 1)
    model = ReadModel(tmp_path / "r.duckdb")
    batch = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("todo_list", "l", 1, "todo_added", todo_id="u", text="again"),  # version 1 twice
    ]
    with pytest.raises(Poisoned, match="next is 2"):
        replica.apply(model, _deliveries(batch), 2, True)
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
    assert replica.apply(handed, deliveries, len(events), True) == []
    own = ReadModel(tmp_path / "own.duckdb")  # plain envelopes: staging converts each itself
    plain = [(sequence, codec.decode(body)) for sequence, _, body in deliveries]
    assert own.apply(plain, len(events), halt=True) == []
    for table in ("todos", "users", "stream_counts", "aggregate_pending"):
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert handed.con.execute(query).fetchall() == own.con.execute(query).fetchall(), table
    todo = handed.con.execute("SELECT text FROM todos WHERE list_id = 'old'").fetchall()
    assert todo == [("from schema 1",)]
