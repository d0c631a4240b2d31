"""Applying batches to a real DuckDB file: last write wins, checkpoint, poison events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from common import envelope as codec
from common.envelope import Envelope, Metadata, Stored
from projector.readmodel import ReadModel
from projector.readmodel_isolation import Poisoned
from projector.replica import apply


def _event(kind: str, key: str, version: int, event_type: str, **payload: Any) -> Envelope:
    return codec.new_envelope(
        kind,
        key,
        version,
        event_type,
        payload,
        schema=2 if event_type == "todo_added" else 1,
        occurred_at=f"2026-01-01T00:00:{version:02d}.000Z",
        metadata=Metadata(command_id=f"c{key}{version}", correlation_id="x"),
    )


def _deliveries(events: list[Envelope], first: int = 1) -> list[tuple[int, str, bytes]]:
    return [(first + i, _subject(e), codec.encode(e)) for i, e in enumerate(events)]


def _two_added() -> list[Envelope]:
    """Todos "a" ("one") and "b" ("two") added to list "l": versions 1 and 2."""
    return [
        _event("todo_list", "l", 1, "todo_added", todo_id="a", text="one"),
        _event("todo_list", "l", 2, "todo_added", todo_id="b", text="two"),
    ]


def _subject(e: Envelope) -> str:
    return f"x.events.{e.aggregate_type}.{e.aggregate_id}"


@pytest.fixture
def model(tmp_path: Path) -> ReadModel:
    return ReadModel(tmp_path / "r.duckdb")


def test_a_batch_holding_the_same_key_several_times_keeps_the_last_write(model: ReadModel) -> None:
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("todo_list", "l", 2, "todo_renamed", todo_id="t", text="two"),
        _event("todo_list", "l", 3, "todo_completed", todo_id="t"),
        _event("todo_list", "l", 4, "todo_renamed", todo_id="t", text="three"),
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
        _event("user_profile", "u", 2, "profile_updated", name="Bea"),
        _event("user_profile", "u", 3, "profile_updated", email="b@x.io"),
    ]
    apply(model, _deliveries(events), len(events), halt=True)
    todos = model.con.execute("SELECT text, completed, updated_seq FROM todos").fetchall()
    users = model.con.execute("SELECT name, email, active FROM users").fetchall()
    assert todos == [("three", True, 4)]
    assert users == [("Bea", "b@x.io", True)]
    active = model.con.execute("SELECT active, completed FROM todos_over_time").fetchall()
    assert active == [(0, 1)]


def test_the_checkpoint_advances_on_an_empty_batch_and_old_sequences_are_skipped(
    model: ReadModel,
) -> None:
    added = [_event("todo_list", "l", 1, "todo_added", todo_id="t", text="one")]
    apply(model, _deliveries(added), 1, halt=True)
    apply(model, [], 5, halt=True)
    assert model.checkpoint == 5
    apply(model, _deliveries(added), 1, halt=True)  # a redelivery of sequence 1
    assert model.con.execute("SELECT sum(events) FROM event_counts").fetchall() == [(1,)]
    reopened = ReadModel(model.path.with_name("other.duckdb"))
    assert reopened.checkpoint == 0
    model.close()
    assert ReadModel(model.path).checkpoint == 5


def test_a_batch_redelivered_after_a_restart_leaves_one_row_per_key(model: ReadModel) -> None:
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
        _event("todo_list", "l", 2, "todo_added", todo_id="s", text="two"),
        _event("todo_list", "l", 3, "todo_completed", todo_id="t"),
    ]
    apply(model, _deliveries(events[:2]), 2, halt=True)
    model.close()
    restarted = ReadModel(model.path)  # the stream redelivers from before the checkpoint
    apply(restarted, _deliveries(events), len(events), halt=True)
    todos = restarted.con.execute("SELECT todo_id, completed FROM todos ORDER BY todo_id")
    assert todos.fetchall() == [("s", False), ("t", True)]
    assert restarted.con.execute("SELECT count(*) FROM users").fetchall() == [(1,)]


def test_a_poison_event_becomes_a_dead_letter_and_the_batch_goes_on(model: ReadModel) -> None:
    good = _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one")
    unreadable = _event("todo_list", "l", 2, "todo_renamed", todo_id="t")  # no text
    deliveries = [
        *_deliveries([good]),
        (2, _subject(good), b"{not json"),
        (3, "x.events.todo_list.other", codec.encode(good)),  # another aggregate's envelope
        *_deliveries([unreadable], 4),
    ]
    apply(model, deliveries, 4, halt=False)
    dead = model.con.execute("SELECT sequence, error FROM dead_letters ORDER BY 1").fetchall()
    assert [sequence for sequence, _ in dead] == [2, 3, 4]
    assert "decode" in dead[0][1] and "subject" in dead[1][1] and "text" in dead[2][1]
    assert model.con.execute("SELECT text FROM todos").fetchall() == [("one",)]
    assert model.checkpoint == 4


def test_a_poison_event_halts_the_projection_when_set_to_halt(model: ReadModel) -> None:
    good = _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one")
    later = _event("todo_list", "l", 2, "todo_renamed", todo_id="t", text="two")
    deliveries = [
        *_deliveries([good]),
        (2, _subject(good), b"{not json"),
        *_deliveries([later], 3),
    ]
    with pytest.raises(Poisoned, match="sequence 2"):
        apply(model, deliveries, 3, halt=True)
    assert model.checkpoint == 1  # stopped just before the poison event
    assert model.con.execute("SELECT text FROM todos").fetchall() == [("one",)]
    assert model.con.execute("SELECT count(*) FROM dead_letters").fetchall() == [(0,)]


def test_a_change_to_a_todo_never_added_is_a_dead_letter_and_moves_no_count(
    model: ReadModel,
) -> None:
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="a", text="one"),
        _event("todo_list", "l", 2, "todo_completed", todo_id="ghost"),
        _event("todo_list", "m", 1, "todo_deleted", todo_id="ghost"),
        _event("user_profile", "nobody", 1, "profile_updated", name="X"),
    ]
    dead = apply(model, _deliveries(events), len(events), halt=False)
    assert [d[0] for d in dead] == [2, 3, 4]
    assert all("not in the list" in d[2] for d in dead[:2]) and "not registered" in dead[2][2]
    assert model.con.execute("SELECT todo_id FROM todos").fetchall() == [("a",)]
    assert model.con.execute("SELECT count(*) FROM users").fetchall() == [(0,)]
    assert model.con.execute("SELECT active, completed FROM todos_over_time").fetchall() == [(1, 0)]
    assert model.con.execute("SELECT sum(events) FROM event_counts").fetchall() == [(1,)]


def _state(model: ReadModel) -> list[tuple[Any, ...]]:
    todos = model.con.execute(
        "SELECT list_id, todo_id, text, completed FROM todos WHERE NOT deleted ORDER BY 1, 2"
    )
    return todos.fetchall()


IMPOSSIBLE_HISTORIES = {  # events after `a` was added at sequence 1, the sequences refused
    "a todo added twice": (
        [("todo_added", 2, {"todo_id": "a", "text": "again"}),
         ("todo_added", 2, {"todo_id": "zz", "text": "z"})], [2]),
    "a version repeated": (
        [("todo_added", 1, {"todo_id": "b", "text": "b"}),
         ("todo_added", 2, {"todo_id": "zz", "text": "z"})], [2]),
    "a version skipped": (
        [("todo_added", 7, {"todo_id": "b", "text": "b"}),
         ("todo_added", 2, {"todo_id": "zz", "text": "z"})], [2]),
    "completed twice": (
        [("todo_completed", 2, {"todo_id": "a"}), ("todo_completed", 3, {"todo_id": "a"}),
         ("todo_added", 3, {"todo_id": "zz", "text": "z"})], [3]),
    "changed after its delete": (
        [("todo_added", 2, {"todo_id": "zz", "text": "z"}), ("todo_deleted", 3, {"todo_id": "a"}),
         ("todo_renamed", 4, {"todo_id": "a", "text": "x"})], [4]),
}  # fmt: skip


@pytest.mark.parametrize("split", [False, True], ids=["one batch", "a batch each"])
@pytest.mark.parametrize("name", list(IMPOSSIBLE_HISTORIES))
def test_an_event_not_next_or_impossible_for_its_aggregate_is_a_dead_letter(
    model: ReadModel, name: str, split: bool
) -> None:
    later, expected_dead = IMPOSSIBLE_HISTORIES[name]
    events = [_event("todo_list", "l", 1, "todo_added", todo_id="a", text="one")]
    events += [_event("todo_list", "l", v, t, **p) for t, v, p in later]
    deliveries = _deliveries(events)
    batches = [[d] for d in deliveries] if split else [deliveries]
    dead = [d for batch in batches for d in apply(model, batch, batch[-1][0], halt=False)]
    assert [d[0] for d in dead] == expected_dead
    assert dead[0][1] == "x.events.todo_list.l"
    good = [e for s, e in enumerate(events, start=1) if s not in expected_dead]
    clean = ReadModel(model.path.with_name("clean.duckdb"))
    assert apply(clean, _deliveries(good), len(good), halt=True) == []
    assert _state(model) == _state(clean)  # the fold of the good events
    assert model.con.execute("SELECT sum(events) FROM event_counts").fetchall() == [(len(good),)]
    counts = "SELECT active, completed FROM todos_over_time ORDER BY minute DESC LIMIT 1"
    assert model.con.execute(counts).fetchall() == clean.con.execute(counts).fetchall()


def test_deleting_a_todo_from_an_earlier_batch_moves_the_count_it_was_in(
    model: ReadModel,
) -> None:
    first = [*_two_added(), _event("todo_list", "l", 3, "todo_completed", todo_id="b")]
    apply(model, _deliveries(first), 3, halt=True)
    second = [
        _event("todo_list", "l", 4, "todo_deleted", todo_id="b"),
        _event("todo_list", "l", 5, "todo_renamed", todo_id="a", text="uno"),
    ]
    apply(model, _deliveries(second, 4), 5, halt=True)
    counts = model.con.execute("SELECT active, completed FROM todos_over_time ORDER BY minute")
    assert counts.fetchall()[-1] == (1, 0)
    assert model.con.execute("SELECT text FROM todos WHERE NOT deleted").fetchall() == [("uno",)]


def test_a_message_nested_deeper_than_the_decoder_goes_is_a_dead_letter(
    model: ReadModel,
) -> None:
    events = _two_added()
    deep = (2, "x.events.todo_list.l", b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    deliveries = [_deliveries(events)[0], deep, *_deliveries(events[1:], 3)]
    dead = apply(model, deliveries, 3, halt=False)  # a verify10 input: it ended the projector
    assert [(d.sequence, d.error[:25]) for d in dead] == [(2, "cannot decode: not an eve")]
    assert model.con.execute("SELECT todo_id FROM todos ORDER BY 1").fetchall() == [("a",), ("b",)]
    assert model.checkpoint == 3


POISON_ENVELOPES = [  # fields outside their domain, as they are if nothing decodes them
    {"version": 2**63},
    {"version": 2**70},
    {"occurred_at": "yesterday\r"},
    {"occurred_at": "2026-02-30T00:00:00Z"},
]


@pytest.mark.parametrize("poison", POISON_ENVELOPES, ids=lambda p: repr(p)[:40])
def test_applying_a_batch_that_fails_on_one_event_dead_letters_it_and_applies_the_rest(
    model: ReadModel, poison: dict[str, Any]
) -> None:
    # Past the decoder (defence in depth): whatever DuckDB or Arrow refuses is isolated.
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="a", text="one"),
        _event("todo_list", "l", 2, "todo_added", todo_id="b", text="two"),
        _event("todo_list", "p", 1, "todo_added", todo_id="x", text="bad"),
        _event("todo_list", "l", 3, "todo_completed", todo_id="a"),
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
    ]
    events[2] = msgspec.structs.replace(events[2], **poison)
    batch = list(enumerate(events, start=1))
    dead = model.apply(batch, 7, subjects={3: "ironstar.events.todo_list.p"})
    # Dead for the projections that cannot read it (all of them, or only those reading the
    # field that is out of its domain), applied by the others.
    assert {(d.sequence, d.subject) for d in dead} == {(3, "ironstar.events.todo_list.p")}
    found = "SELECT sequence, subject, error, projection FROM dead_letters ORDER BY projection"
    letters = model.con.execute(found).fetchall()
    assert letters == sorted(
        [(d.sequence, d.subject, d.error, d.projection) for d in dead], key=lambda d: d[3]
    )
    todos = "SELECT list_id, todo_id, completed FROM todos WHERE list_id = 'l' ORDER BY 2"
    assert model.con.execute(todos).fetchall() == [("l", "a", True), ("l", "b", False)]
    assert model.con.execute("SELECT count(*) FROM users").fetchall() == [(1,)]
    assert model.checkpoint == 7
    model.close()
    again = ReadModel(model.path)
    assert again.checkpoint == 7
    assert again.apply(batch, 7) == []  # a redelivery after a restart changes nothing


def test_a_batch_failing_on_an_event_halts_just_before_it_when_set_to_halt(
    model: ReadModel,
) -> None:
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="a", text="one"),
        _event("todo_list", "l", 2, "todo_added", todo_id="b", text="two"),
        _event("todo_list", "l", 3, "todo_added", todo_id="c", text="three"),
    ]
    events[2] = msgspec.structs.replace(events[2], version=2**64)
    with pytest.raises(Poisoned, match="sequence 3"):
        model.apply(list(enumerate(events, start=1)), 3, halt=True)
    assert model.checkpoint == 2
    assert model.con.execute("SELECT todo_id FROM todos ORDER BY 1").fetchall() == [("a",), ("b",)]
    assert model.con.execute("SELECT count(*) FROM dead_letters").fetchall() == [(0,)]


def test_a_dead_letter_of_a_projection_names_the_full_subject(model: ReadModel) -> None:
    unreadable = _event("todo_list", "l", 1, "todo_renamed", todo_id="t")  # no text
    apply(model, _deliveries([unreadable]), 1, halt=False)
    subjects = model.con.execute("SELECT subject FROM dead_letters").fetchall()
    assert subjects == [("x.events.todo_list.l",)]


def test_any_app_gets_its_events_checked_in_order_and_against_its_own_evolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `versions` check is the engine's, not the example's: another app's aggregate
    (stock items, whose evolve here refuses shipping more than is on hand) has an event out
    of order and one its evolve refuses dead-lettered, and the rest applied."""
    import dataclasses

    from common.catalogue import Catalogue
    from tests.apps import inventory

    stock = inventory.app.aggregates[0]

    def strict(state: Any, event: Any) -> Any:
        after = stock.evolve(state, event)
        if after.on_hand < 0:
            raise ValueError(f"only {state.on_hand} on hand")
        return after

    app = dataclasses.replace(
        inventory.app, aggregates=(dataclasses.replace(stock, evolve=strict),)
    )
    loaded = Catalogue(app)
    monkeypatch.setattr("common.catalogue._cached", loaded)  # the process's app
    model = ReadModel(tmp_path / "inventory.duckdb", catalogue=loaded)
    events = [
        _event("stock_item", "i", 1, "item_registered", name="bolt"),
        _event("stock_item", "i", 3, "stock_received", quantity=5),  # version 2 skipped
        _event("stock_item", "i", 2, "stock_shipped", quantity=1),  # 0 on hand
    ]
    events = [msgspec.structs.replace(e, schema=2 if e.event_type == "stock_received" else 1)
              for e in events]  # fmt: skip
    dead = apply(model, _deliveries(events), 3, halt=False)
    assert [(d[0], d[1]) for d in dead] == [
        (2, "x.events.stock_item.i"),
        (3, "x.events.stock_item.i"),
    ]
    assert "its next is 2" in dead[0][2] and "only 0 on hand" in dead[1][2]
    versions = "SELECT aggregate_type, aggregate_id, version FROM aggregate_versions"
    assert model.con.execute(versions).fetchall() == [("stock_item", "i", 1)]


def test_stored_records_and_plain_sequence_event_pairs_apply_alike(tmp_path: Path) -> None:
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="a", text="one"),
        _event("todo_list", "l", 2, "todo_completed", todo_id="a"),
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
    ]
    records = ReadModel(tmp_path / "records.duckdb")
    pairs = ReadModel(tmp_path / "pairs.duckdb")
    assert records.apply([Stored(n, e) for n, e in enumerate(events, start=1)], 3) == []
    assert pairs.apply(list(enumerate(events, start=1)), 3) == []
    for table in ("todos", "users", "stream_counts", "aggregate_versions"):
        read = f"SELECT * FROM {table} ORDER BY ALL"
        assert records.con.execute(read).fetchall() == pairs.con.execute(read).fetchall()
    assert records.checkpoint == pairs.checkpoint == 3
