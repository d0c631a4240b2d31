"""A projection that declares the event types it reads (`Projection.events`) is skipped
for a batch holding none of them, and applies every batch holding one."""

from __future__ import annotations

from pathlib import Path

from common import envelope as codec
from common.app import Projection
from common.envelope import Envelope
from projector.readmodel import ReadModel
from projector.replica import apply

# One row per batch it runs on, whatever the batch holds: shows when it ran.
COUNTER = Projection(
    name="todo_batches",
    version=1,
    tables=("todo_batches",),
    ddl=("CREATE TABLE IF NOT EXISTS todo_batches (last BIGINT, events BIGINT)",),
    apply=("INSERT INTO todo_batches SELECT max(sequence), count(*) FROM batch",),
    events=frozenset({"todo_added", "todo_deleted"}),
)


def _event(kind: str, key: str, version: int, event_type: str, **payload: str) -> Envelope:
    schema = 2 if event_type == "todo_added" else 1
    return codec.new_envelope(kind, key, version, event_type, payload, schema=schema)


def _deliveries(events: list[Envelope], first: int) -> list[tuple[int, str, bytes]]:
    return [
        (first + i, f"x.events.{e.aggregate_type}.{e.aggregate_id}", codec.encode(e))
        for i, e in enumerate(events)
    ]


def test_a_batch_without_the_declared_event_types_skips_the_projection(tmp_path: Path) -> None:
    model = ReadModel(tmp_path / "r.duckdb", [COUNTER])
    users = [_event("user_profile", "u", 1, "user_registered", name="A", email="a@b.io")]
    renamed = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("todo_list", "l", 2, "todo_renamed", todo_id="t", text="two"),
    ]
    apply(model, _deliveries(users, 1), 1, halt=True)
    assert "todo_batches" not in model.changed and model.checkpoint == 1
    apply(model, _deliveries(renamed[:1], 2), 2, halt=True)
    assert "todo_batches" in model.changed
    apply(model, _deliveries(renamed[1:], 3), 3, halt=True)  # a todo event it does not read
    mixed = [
        _event("user_profile", "u", 2, "user_deactivated"),
        _event("todo_list", "l", 3, "todo_deleted", todo_id="t"),
    ]
    apply(model, _deliveries(mixed, 4), 5, halt=True)
    rows = model.con.execute("SELECT last, events FROM todo_batches ORDER BY last").fetchall()
    assert rows == [(2, 1), (5, 2)]  # the whole batch, once it holds one event it reads
