"""The example's SQL projections equal a plain Python fold of the same history.

Random valid histories (todos added, renamed, completed, reopened, deleted; users
registered, updated, deactivated) cut into random batches are applied by the real engine
to a real DuckDB file; `todos` (the view of every list's todos; a deleted todo leaves its
list), `users` and the per-minute todo counts must be what a simple fold of the events
says, whatever the cuts. The SQL alone (no `versions` check in
front of it) must also ignore changes to todos and users it never saw added.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from common import envelope as codec
from common.envelope import Envelope, Metadata
from examples.todo.projections import todo_lists, user_profiles
from projector.readmodel import ReadModel
from projector.replica import apply

_START = datetime(2026, 1, 1, tzinfo=UTC)
_STEP_S = 17  # a few events per minute, so batches and minutes cut each other


class Fold:
    """The read models as a fold of envelopes: what the SQL must equal."""

    def __init__(self) -> None:
        self.todos: dict[tuple[str, str], list[Any]] = {}  # text, completed, deleted, pos, seq
        self.users: dict[str, list[Any]] = {}  # name, email, active, seq
        self.minutes: dict[int, list[int]] = {}  # epoch minute -> [active, completed] deltas

    def apply(self, sequence: int, e: Envelope, minute: int) -> None:
        p = e.payload
        if e.aggregate_type == "user_profile":
            user = self.users.get(e.aggregate_id)
            if e.event_type == "user_registered":
                self.users[e.aggregate_id] = [p["name"], p["email"], True, sequence]
            elif user is not None:
                user[0] = p.get("name", user[0])
                user[1] = p.get("email", user[1])
                user[2] = user[2] and e.event_type != "user_deactivated"
                user[3] = sequence
            return
        key = (e.aggregate_id, p["todo_id"])
        todo = self.todos.get(key)
        delta = [0, 0]
        if e.event_type == "todo_added":
            self.todos[key] = [p["text"], False, False, e.version, sequence]
            delta = [1, 0]
        elif todo is None:
            return  # a change to a todo never added: nothing
        else:
            todo[4] = sequence
            if e.event_type == "todo_renamed":
                todo[0] = p["text"]
            elif e.event_type == "todo_completed":
                todo[1], delta = True, [-1, 1]
            elif e.event_type == "todo_reopened":
                todo[1], delta = False, [1, -1]
            elif e.event_type == "todo_deleted":
                todo[2], delta = True, ([0, -1] if todo[1] else [-1, 0])
        if e.event_type != "todo_renamed":
            counts = self.minutes.setdefault(minute, [0, 0])
            counts[0] += delta[0]
            counts[1] += delta[1]


def _history(steps: list[tuple[int, int, int]]) -> list[Envelope]:
    """Valid envelopes from drawn steps (kind, which aggregate, which choice)."""
    lists: dict[str, dict[str, list[bool]]] = {}  # list -> todo -> [completed, deleted]
    users: dict[str, bool] = {}  # user -> active
    versions: dict[str, int] = {}
    out: list[Envelope] = []

    def emit(kind: str, key: str, event_type: str, payload: dict[str, Any]) -> None:
        versions[key] = versions.get(key, 0) + 1
        at = _START + timedelta(seconds=_STEP_S * len(out))
        out.append(
            codec.new_envelope(
                kind,
                key,
                versions[key],
                event_type,
                payload,
                schema=2 if event_type == "todo_added" else 1,
                occurred_at=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                metadata=Metadata(command_id=f"c{len(out)}", correlation_id="x"),
            )
        )

    for kind, which, choice in steps:
        if kind == 0:  # a user
            user = f"u{which}"
            if user not in users:
                emit("user_profile", user, "user_registered", {"name": "N", "email": "a@b.io"})
                users[user] = True
            elif users[user] and choice % 4:
                change = {"name": f"n{choice}"} if choice % 2 else {"email": f"{choice}@b.io"}
                emit("user_profile", user, "profile_updated", change)
            elif users[user]:
                emit("user_profile", user, "user_deactivated", {})
                users[user] = False
            continue
        name = f"l{which}"
        todos = lists.setdefault(name, {})
        live = sorted(t for t, (_, deleted) in todos.items() if not deleted)
        if not live or choice % 5 == 0:
            todo = f"t{len(todos)}"
            todos[todo] = [False, False]
            emit("todo_list", name, "todo_added", {"todo_id": todo, "text": f"x{choice}"})
            continue
        todo = live[choice % len(live)]
        state = todos[todo]
        if choice % 5 == 1:
            emit("todo_list", name, "todo_renamed", {"todo_id": todo, "text": f"r{choice}"})
        elif choice % 5 in (2, 3):
            state[0] = not state[0]
            kind_name = "todo_completed" if state[0] else "todo_reopened"
            emit("todo_list", name, kind_name, {"todo_id": todo})
        else:
            state[1] = True
            emit("todo_list", name, "todo_deleted", {"todo_id": todo})
    return out


def _minute(e: Envelope) -> int:
    return int(datetime.fromisoformat(e.occurred_at).timestamp()) // 60 * 60


def _read(model: ReadModel) -> tuple[Any, ...]:
    con = model.con
    todos = con.execute(
        "SELECT list_id, todo_id, text, completed, deleted, position, updated_seq FROM todos"
    ).fetchall()
    users = con.execute("SELECT user_id, name, email, active, updated_seq FROM users").fetchall()
    minutes = con.execute(
        "SELECT epoch(minute)::BIGINT, active_delta, completed_delta FROM todo_changes"
    ).fetchall()
    counted = con.execute("SELECT count(*), count(DISTINCT list_id) FROM todo_lists").fetchall()
    assert counted[0][0] == counted[0][1]  # a batch's new row of a list replaced the old one
    return (
        {(row[0], row[1]): list(row[2:]) for row in todos},
        {row[0]: list(row[1:]) for row in users},
        {row[0]: list(row[1:]) for row in minutes},
        len(todos),
    )


steps = st.lists(
    st.tuples(st.sampled_from([0, 1, 1, 1]), st.integers(0, 2), st.integers(0, 99)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=15)
@given(steps=steps, cuts=st.sets(st.integers(1, 59), max_size=8))
def test_the_sql_projections_equal_a_python_fold_whatever_the_batches(
    steps: list[tuple[int, int, int]], cuts: set[int]
) -> None:
    events = _history(steps)
    fold = Fold()
    for sequence, e in enumerate(events, start=1):
        fold.apply(sequence, e, _minute(e))
    deliveries = [
        (i, f"x.events.{e.aggregate_type}.{e.aggregate_id}", codec.encode(e))
        for i, e in enumerate(events, start=1)
    ]
    bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    with tempfile.TemporaryDirectory() as tmp:
        model = ReadModel(Path(tmp) / "r.duckdb")
        try:
            for start, end in itertools.pairwise(bounds):
                assert apply(model, deliveries[start:end], end, halt=True) == []
            todos, users, minutes, rows = _read(model)
        finally:
            model.close()
    live = {key: value for key, value in fold.todos.items() if not value[2]}
    assert todos == live  # a deleted todo leaves its list
    assert rows == len(live)  # one row per todo
    assert users == fold.users
    assert minutes == fold.minutes


def _row(sequence: int, e: Envelope) -> tuple[Any, ...]:
    payload = msgspec.json.encode(e.payload).decode()
    return (sequence, e.aggregate_type, e.aggregate_id, e.event_type, e.version,
            e.occurred_at, payload)  # fmt: skip


def _sql_alone(events: list[Envelope]) -> duckdb.DuckDBPyConnection:
    """The example's statements over `events` as `batch`, without the engine in front."""
    con = duckdb.connect()
    for projection in (todo_lists.projection, user_profiles.projection):
        for statement in projection.ddl:
            con.execute(statement)
    con.execute(
        """CREATE TEMP TABLE batch (sequence BIGINT, aggregate_type VARCHAR,
           aggregate_id VARCHAR, event_type VARCHAR, version BIGINT,
           occurred_at TIMESTAMPTZ, payload JSON)"""
    )
    con.executemany(
        "INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_row(i, e) for i, e in enumerate(events, start=1)],
    )
    assert isinstance(todo_lists.projection.apply, tuple)
    assert isinstance(user_profiles.projection.apply, tuple)
    for statement in (*todo_lists.projection.apply, *user_profiles.projection.apply):
        con.execute(statement)
    return con


def test_the_sql_alone_ignores_changes_to_todos_and_users_never_added() -> None:
    history = _history([(1, 0, 0), (0, 0, 0)])  # l0 gets t0, u0 registers
    at = history[-1].occurred_at
    ghosts = [
        codec.new_envelope("todo_list", "l0", 9, kind, {"todo_id": "ghost"}, occurred_at=at)
        for kind in ("todo_completed", "todo_reopened", "todo_deleted")
    ]
    nobody = {"name": "X"}
    ghosts.append(
        codec.new_envelope("user_profile", "x", 2, "profile_updated", nobody, occurred_at=at)
    )
    con = _sql_alone([*history, *ghosts])
    assert con.execute("SELECT list_id, todo_id FROM todos").fetchall() == [("l0", "t0")]
    assert con.execute("SELECT user_id FROM users").fetchall() == [("u0",)]
    counts = con.execute("SELECT sum(active_delta), sum(completed_delta) FROM todo_changes")
    assert counts.fetchall() == [(1, 0)]


def test_get_reads_one_row_of_todo_lists_through_its_index(tmp_path: Path) -> None:
    steps = [(1, which, choice) for choice in range(40) if choice % 5 != 4 for which in range(3)]
    events = _history(steps)  # todos added, renamed, completed and reopened; none deleted
    deliveries = [
        (i, f"x.events.{e.aggregate_type}.{e.aggregate_id}", codec.encode(e))
        for i, e in enumerate(events, start=1)
    ]
    model = ReadModel(tmp_path / "r.duckdb")
    try:
        assert apply(model, deliveries, len(deliveries), halt=True) == []
        rows = model.con.execute("SELECT list_id FROM todo_lists ORDER BY 1").fetchall()
        assert rows == [("l0",), ("l1",), ("l2",)]
        sql = todo_lists.projection.queries["get"].sql
        plan = model.con.execute(f"EXPLAIN ANALYZE {sql}", {"list_id": "l1"}).fetchall()
        assert "Type: Index Scan" in plan[0][1]  # one row by key, not a scan of every list
        answer = model.query("todo_lists", "get", todo_lists.ListId("l1"))
        todos = "SELECT todo_id FROM todos WHERE list_id = 'l1' ORDER BY position"
        expected = [row[0] for row in model.con.execute(todos).fetchall()]
    finally:
        model.close()
    assert answer["list_id"] == "l1" and expected
    assert [item["todo_id"] for item in answer["items"]] == expected
    assert answer["active"] + answer["completed"] == len(expected)
