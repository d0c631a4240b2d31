"""One projection failing on an event takes it from that projection only.

An app (the test app `inventory` with two more projections: `ledger` in SQL, which casts
quantities to INTEGER, and `audit`, a Python hook that raises on one quantity) over a real
DuckDB file: the event is that projection's dead letter; the built-in `versions` and
`stream`, and every other projection, apply it, and the aggregate's later events apply; an event
no projection applies is not in the versions' states, before a restart or after it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.app import Batch, Projection, Unapplicable
from common.catalogue import Catalogue
from projector import versions
from projector.readmodel import ReadModel
from projector.replica import apply
from tests.apps import inventory
from tests.support.feeds import make

LEDGER = Projection(
    name="ledger",
    version=1,
    tables=("ledger",),
    ddl=("CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, quantity INTEGER)",),
    apply=(
        """INSERT INTO ledger SELECT sequence, (payload->>'quantity')::INTEGER FROM batch
           WHERE event_type IN ('stock_received', 'stock_shipped')""",
    ),
)
CURSED = 13  # a quantity the audit hook cannot read
BOTH = 2**41  # one neither the audit hook nor the ledger (INTEGER) can
REFUSED = 17  # one the audit hook says it cannot apply (`Unapplicable`)


def _audit(con: Any, batch: Batch) -> None:
    for sequence, event in batch.events:
        if event.payload.get("quantity") in (CURSED, BOTH):
            raise KeyError("quantity")  # an app bug, for this one event
        if event.payload.get("quantity") == REFUSED:
            raise Unapplicable(sequence, "a quantity this hook refuses")
        con.execute("INSERT INTO audit VALUES (?)", [sequence])


AUDIT = Projection(
    name="audit",
    version=1,
    tables=("audit",),
    ddl=("CREATE TABLE IF NOT EXISTS audit (seq BIGINT PRIMARY KEY)",),
    apply=_audit,
)


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ReadModel:
    app = dataclasses.replace(
        inventory.app, projections=(*inventory.app.projections, LEDGER, AUDIT)
    )
    loaded = Catalogue(app)
    monkeypatch.setattr("common.catalogue._cached", loaded)  # the process's app
    return ReadModel(tmp_path / "inventory.duckdb", catalogue=loaded)


def _event(key: str, version: int, event_type: str, **payload: Any) -> tuple[str, bytes]:
    schema = 2 if event_type == "stock_received" else 1
    body = make("stock_item", key, version, event_type, payload, schema=schema)
    return f"x.events.stock_item.{key}", body


def _deliveries(events: list[tuple[str, bytes]]) -> list[tuple[int, str, bytes]]:
    return [(i, subject, body) for i, (subject, body) in enumerate(events, start=1)]


def _received_between(model: ReadModel, quantity: int) -> list[Any]:
    """The dead letters of bolt registered, `quantity` received, then 1 received."""
    events = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 2, "stock_received", quantity=quantity),
        _event("i", 3, "stock_received", quantity=1),
    ]
    return apply(model, _deliveries(events), 3, halt=False)


def _rows(model: ReadModel, sql: str) -> list[tuple[Any, ...]]:
    return model.con.execute(sql).fetchall()


@pytest.mark.parametrize("batch_size", [1, 2, 7], ids=lambda n: f"batches of {n}")
def test_an_event_one_projection_cannot_apply_is_its_dead_letter_and_every_other_applies_it(
    model: ReadModel, batch_size: int
) -> None:
    events = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 2, "stock_received", quantity=5),
        _event("i", 3, "stock_received", quantity=2**40),  # over INTEGER: ledger fails
        _event("j", 1, "item_registered", name="nut"),
        _event("i", 4, "stock_shipped", quantity=CURSED),  # the audit hook raises
        _event("i", 5, "stock_received", quantity=1),
        _event("j", 2, "stock_received", quantity=2),
    ]
    deliveries = _deliveries(events)
    dead = []
    for start in range(0, len(deliveries), batch_size):
        part = deliveries[start : start + batch_size]
        dead += apply(model, part, part[-1][0], halt=False)
    assert [(d.sequence, d.projection) for d in dead] == [(3, "ledger"), (5, "audit")]
    letters = _rows(model, "SELECT sequence, projection, error FROM dead_letters ORDER BY 1")
    assert [row[:2] for row in letters] == [(3, "ledger"), (5, "audit")]
    assert "ledger" in letters[0][2] and "INT32" in letters[0][2]
    assert "audit" in letters[1][2] and "KeyError" in letters[1][2]
    levels = _rows(model, "SELECT sku, on_hand FROM stock_levels ORDER BY 1")
    assert levels == [("i", 5 + 2**40 - CURSED + 1), ("j", 2)]
    versions = _rows(model, "SELECT aggregate_id, version FROM aggregate_versions ORDER BY 1")
    assert versions == [("i", 5), ("j", 2)]
    assert _rows(model, "SELECT sum(events)::BIGINT FROM stream_counts") == [(7,)]
    assert _rows(model, "SELECT seq FROM ledger ORDER BY 1") == [(2,), (5,), (6,), (7,)]
    assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (2,), (3,), (4,), (6,), (7,)]
    assert model.checkpoint == 7


def test_an_event_two_projections_cannot_apply_is_a_dead_letter_of_each(model: ReadModel) -> None:
    events = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 2, "stock_received", quantity=BOTH),
        _event("i", 3, "stock_shipped", quantity=1),
    ]
    dead = apply(model, _deliveries(events), 3, halt=False)
    assert sorted((d.sequence, d.projection) for d in dead) == [(2, "audit"), (2, "ledger")]
    assert _rows(model, "SELECT count(*) FROM dead_letters") == [(2,)]
    assert _rows(model, "SELECT on_hand FROM stock_levels") == [(BOTH - 1,)]
    assert _rows(model, "SELECT seq FROM ledger") == [(3,)]
    assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (3,)]


@pytest.mark.parametrize("batch_size", [1, 3], ids=lambda n: f"batches of {n}")
def test_an_event_the_versions_check_refuses_is_every_projections_also_when_sql_fails_on_it(
    model: ReadModel, batch_size: int
) -> None:
    # The check runs beside the SQL statements: its refusal comes first, and no hook sees it.
    events = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 3, "stock_received", quantity=2**40),  # not the next version; over INTEGER
        _event("i", 2, "stock_received", quantity=1),
    ]
    deliveries, dead = _deliveries(events), []
    for start in range(0, len(deliveries), batch_size):
        part = deliveries[start : start + batch_size]
        dead += apply(model, part, part[-1][0], halt=False)
    assert [(d.sequence, d.projection) for d in dead] == [(2, "*")]
    assert "its next is 2" in dead[0].error
    assert _rows(model, "SELECT seq FROM ledger ORDER BY 1") == [(3,)]
    assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (3,)]
    assert _rows(model, "SELECT on_hand FROM stock_levels") == [(1,)]


def test_an_event_a_hook_calls_unapplicable_is_that_hooks_dead_letter_only(
    model: ReadModel,
) -> None:
    dead = _received_between(model, REFUSED)
    assert [(d.sequence, d.projection) for d in dead] == [(2, "audit")]
    assert "a quantity this hook refuses" in dead[0].error
    assert _rows(model, "SELECT on_hand FROM stock_levels") == [(REFUSED + 1,)]
    assert _rows(model, "SELECT seq FROM ledger ORDER BY 1") == [(2,), (3,)]
    assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (3,)]


def test_a_rebuild_keeping_a_projection_keeps_its_dead_letters(
    model: ReadModel, tmp_path: Path
) -> None:
    events = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 2, "stock_received", quantity=BOTH),
    ]
    apply(model, _deliveries(events), 2, halt=False)
    rebuilt = ReadModel(tmp_path / "rebuilt.duckdb", tuple(model.projections.values()))
    apply(rebuilt, _deliveries(events), 2, halt=False, only=["audit"])
    rebuilt.copy_tables(model, ["ledger", "stock", "stream"])
    found = "SELECT sequence, projection FROM dead_letters ORDER BY 2"
    assert _rows(rebuilt, found) == [(2, "audit"), (2, "ledger")]


def test_dead_letters_of_a_file_from_before_per_projection_letters_are_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """CREATE TABLE dead_letters (sequence BIGINT PRIMARY KEY, subject VARCHAR,
           error VARCHAR, data BLOB, recorded_at TIMESTAMPTZ DEFAULT current_timestamp)"""
    )
    con.execute("INSERT INTO dead_letters (sequence, subject, error) VALUES (4, 's', 'bad')")
    con.close()
    model = ReadModel(path)
    found = "SELECT sequence, projection, subject, error FROM dead_letters"
    assert model.con.execute(found).fetchall() == [(4, "*", "s", "bad")]


@pytest.mark.parametrize("flush_events", [1, 100], ids=lambda n: f"states written every {n}")
@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_versions_keep_what_one_projection_missed_and_not_what_every_projection_did(
    model: ReadModel, monkeypatch: pytest.MonkeyPatch, flush_events: int, restart: bool
) -> None:
    monkeypatch.setattr(versions, "FLUSH_EVENTS", flush_events)
    model = ReadModel(model.path)  # its versions with this FLUSH_EVENTS
    first = [
        _event("i", 1, "item_registered", name="bolt"),
        _event("i", 2, "stock_received", quantity=5),
        _event("i", 3, "stock_received", quantity=2**40),  # the ledger's dead letter only
        _event("i", 3, "stock_received", quantity=7),  # a repeat: every projection's
        _event("j", 1, "item_registered", name="nut"),
    ]
    dead = apply(model, _deliveries(first), 5, halt=False)
    if restart:  # the states come back from aggregate_pending or aggregate_states
        model.close()
        model = ReadModel(model.path)
    then = [
        _event("i", 4, "stock_shipped", quantity=1),  # next only if 3 counted once
        _event("i", 4, "stock_shipped", quantity=2),
        _event("j", 2, "stock_received", quantity=2),
    ]
    deliveries = [(i + 6, subject, body) for i, (subject, body) in enumerate(then)]
    dead += apply(model, deliveries, 8, halt=False)
    assert [(d.sequence, d.projection) for d in dead] == [(3, "ledger"), (4, "*"), (7, "*")]
    versions_ = _rows(model, "SELECT aggregate_id, version FROM aggregate_versions ORDER BY 1")
    assert versions_ == [("i", 4), ("j", 2)]
    monkeypatch.setattr(versions, "FLUSH_EVENTS", 1)  # write every state with the next batch
    monkeypatch.setattr(versions, "PER_STATE", 0)
    model.close()
    model = ReadModel(model.path)
    apply(model, [(9, *_event("j", 3, "stock_shipped", quantity=1))], 9, halt=False)
    states = _rows(model, "SELECT aggregate_id, state FROM aggregate_states ORDER BY 1")
    assert [(key, json.loads(state)["on_hand"]) for key, state in states] == [
        ("i", 5 + 2**40 - 1),
        ("j", 1),
    ]


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("COMMIT", "ran COMMIT;"),
        ("PRAGMA threads = 1", "ran PRAGMA;"),
        ("CHECKPOINT", "ran "),
        ("SET threads = 1", "ran SET"),
        ("DROP TABLE stock_levels", "ran DROP"),
        ("DELETE FROM dead_letters", "wrote dead_letters, not one of its tables (audit)"),
        ("DELETE FROM stock_levels", "wrote stock_levels, not one of its tables (audit)"),
    ],
)
def test_a_hook_ending_the_transaction_or_writing_what_is_not_its_own_is_its_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str, says: str
) -> None:
    error = _dead_letter_of_a_hook_running(statement, tmp_path, monkeypatch)
    assert "projection audit's hook" in error and says in error, error


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("SELECT count(*) FROM dead_letters", "names dead_letters, Ironstar's own"),
        ("SELECT sequence FROM main.checkpoint", "names checkpoint, Ironstar's own"),
        ('SELECT * FROM "Projection_Versions"', "names projection_versions, Ironstar's own"),
        ("SELECT * FROM aggregate_states", "names aggregate_states, Ironstar's own"),
        ("SELECT * FROM aggregate_pending", "names aggregate_pending, Ironstar's own"),
        ("INSERT INTO audit SELECT sequence FROM checkpoint", "names checkpoint"),
        ("SELECT * FROM query_table('dead_letters')", "calls query_table(), refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "calls read_csv(), refused"),
    ],
)
def test_a_hook_reading_the_engines_own_tables_is_its_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str, says: str
) -> None:
    error = _dead_letter_of_a_hook_running(statement, tmp_path, monkeypatch)
    assert "projection audit's hook" in error and says in error, error


def test_a_hook_may_name_the_engines_tables_inside_a_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = _dead_letter_of_a_hook_running(
        "SELECT 'checkpoint', 'dead_letters' AS note", tmp_path, monkeypatch, dead=False
    )
    assert error == ""


def _dead_letter_of_a_hook_running(
    statement: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead: bool = True
) -> str:
    """The audit hook's dead letter ('' if none) when it runs `statement` for the cursed
    event; the other projections and the hook's other events apply either way."""

    def rogue(con: Any, batch: Batch) -> None:
        for sequence, event in batch.events:
            if event.payload.get("quantity") == CURSED:
                con.execute(statement)
            con.execute("INSERT INTO audit VALUES (?)", [sequence])

    app = dataclasses.replace(
        inventory.app,
        projections=(*inventory.app.projections, dataclasses.replace(AUDIT, apply=rogue)),
    )
    loaded = Catalogue(app)
    monkeypatch.setattr("common.catalogue._cached", loaded)
    model = ReadModel(tmp_path / "inventory.duckdb", catalogue=loaded)
    found = _received_between(model, CURSED)
    assert _rows(model, "SELECT sku, on_hand FROM stock_levels") == [("i", CURSED + 1)]
    assert _rows(model, "SELECT max(sequence) FROM checkpoint")[0][0] == 3
    if not dead:
        assert found == []
        assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (2,), (3,)]
        return ""
    assert [(d.sequence, d.projection) for d in found] == [(2, "audit")]
    assert _rows(model, "SELECT seq FROM audit ORDER BY 1") == [(1,), (3,)]
    (error,) = _rows(model, "SELECT error FROM dead_letters WHERE projection = 'audit'")[0]
    return str(error)
