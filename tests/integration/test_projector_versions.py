"""The built-in `versions` check across batches, restarts and written states: an event is
accepted or dead-lettered the same whether its aggregate's state was in memory, in the
events logged since the last write, or written (projector/versions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from projector import versions
from projector.readmodel import ReadModel
from projector.replica import apply
from tests.integration.test_projector_apply import _deliveries, _event

HISTORY = [
    [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("todo_list", "l", 2, "todo_completed", todo_id="t"),
    ],
    [_event("todo_list", "l", 3, "todo_reopened", todo_id="t")],
    [
        _event("todo_list", "l", 4, "todo_reopened", todo_id="t"),  # active already
        _event("todo_list", "l", 4, "todo_completed", todo_id="t"),
        _event("todo_list", "l", 5, "todo_added", todo_id="t", text="again"),  # added before
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
    ],
]


@pytest.mark.parametrize("flush_events", [1, 2, 100])
@pytest.mark.parametrize("restart", [False, True])
def test_an_impossible_event_is_refused_alike_wherever_the_state_before_it_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flush_events: int, restart: bool
) -> None:
    monkeypatch.setattr(versions, "FLUSH_EVENTS", flush_events)
    path = tmp_path / "r.duckdb"
    model, sequence, dead = ReadModel(path), 0, []
    for batch in HISTORY:
        dead += apply(model, _deliveries(batch, sequence + 1), sequence + len(batch), False)
        sequence += len(batch)
        if restart:
            model.close()
            model = ReadModel(path)
    assert [d[0] for d in dead] == [4, 6]
    assert "active already" in dead[0][2] and "added before" in dead[1][2]
    found = model.con.execute(
        "SELECT aggregate_id, version FROM aggregate_versions ORDER BY aggregate_id"
    ).fetchall()
    assert found == [("l", 4), ("u", 1)]
    pending = model.con.execute("SELECT count(*) FROM aggregate_pending").fetchall()[0][0]
    assert pending < max(flush_events, 2 * 2)  # every max(flush_events, 2 x aggregates)


def test_states_are_written_once_the_events_logged_reach_twice_the_aggregates_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "FLUSH_EVENTS", 1)
    path = tmp_path / "r.duckdb"
    model = ReadModel(path)

    def counts() -> tuple[int, int]:
        states, pending = model.con.execute(
            "SELECT (SELECT count(*) FROM aggregate_states), count(*) FROM aggregate_pending"
        ).fetchall()[0]
        return states, pending

    added = [_event("todo_list", k, 1, "todo_added", todo_id="t", text="x") for k in "abc"]
    apply(model, _deliveries(added), 3, halt=True)
    assert counts() == (0, 3)  # 3 aggregates known: written after 6 events
    done = [_event("todo_list", k, 2, "todo_completed", todo_id="t") for k in "ab"]
    apply(model, _deliveries(done, 4), 5, halt=True)
    assert counts() == (0, 5)
    apply(
        model, _deliveries([_event("todo_list", "c", 2, "todo_completed", todo_id="t")], 6), 6, True
    )
    assert counts() == (3, 0)
    model.close()
    model = ReadModel(path)  # and a restart reads them back
    again = [_event("todo_list", k, 3, "todo_completed", todo_id="t") for k in "abc"]
    dead = apply(model, _deliveries(again, 7), 9, halt=False)
    assert [d[0] for d in dead] == [7, 8, 9]
    assert all("completed already" in d[2] for d in dead)


def test_states_dropped_from_memory_are_read_back_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "CACHED", 1)
    monkeypatch.setattr(versions, "FLUSH_EVENTS", 2)
    model = ReadModel(tmp_path / "r.duckdb")
    lists = [_event("todo_list", k, 1, "todo_added", todo_id="t", text="x") for k in "abc"]
    apply(model, _deliveries(lists), 3, halt=True)
    again = [_event("todo_list", k, 2, "todo_added", todo_id="t", text="y") for k in "abc"]
    dead = apply(model, _deliveries(again, 4), 6, halt=False)
    assert [d[0] for d in dead] == [4, 5, 6]
    assert all("added before" in d[2] for d in dead)
