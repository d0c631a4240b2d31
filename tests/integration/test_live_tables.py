"""What live queries are re-run for, on a real DuckDB file: the tables a committed batch
changed, and the tables a query's answer reads (views expanded, CTEs not tables)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import catalogue
from projector.dependencies import EVERY, query_reads, tables_read
from projector.readmodel import ReadModel
from projector.replica import apply
from tests.integration.test_projector_apply import _deliveries, _event


@pytest.fixture
def model(tmp_path: Path) -> ReadModel:
    return ReadModel(tmp_path / "r.duckdb")


def test_a_batch_names_only_the_tables_it_changed(model: ReadModel) -> None:
    users = [_event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io")]
    apply(model, _deliveries(users), 1, halt=True)
    assert "users" in model.changed and "stream_counts" in model.changed
    assert "checkpoint" in model.changed
    assert not {"todo_lists", "todo_changes"} & model.changed, "no todo changed"
    todos = [_event("todo_list", "l", 1, "todo_added", todo_id="t", text="one")]
    apply(model, _deliveries(todos, first=2), 2, halt=True)
    assert {"todo_lists", "todo_changes"} <= model.changed and "users" not in model.changed
    apply(model, [], 2, halt=True)  # nothing new: nothing changed
    assert model.changed == frozenset()


def test_a_query_reads_the_tables_under_its_views_and_not_its_ctes(model: ReadModel) -> None:
    con = model.con
    assert tables_read(con, "SELECT * FROM throughput") == {"stream_counts"}
    assert tables_read(con, "SELECT * FROM todos_over_time") == {"todo_changes"}
    assert tables_read(con, "SELECT * FROM todos") == {"todo_lists"}
    with_cte = "WITH todos AS (SELECT 1 AS x) SELECT * FROM todos, users"
    assert tables_read(con, with_cte) == {"users"}
    assert tables_read(con, "SELECT 1") == frozenset()
    assert tables_read(con, "not sql at all") == {EVERY}


def test_catalogue_queries_read_their_tables_and_python_ones_read_everything(
    model: ReadModel,
) -> None:
    cat = catalogue.current()
    assert query_reads(model.con, cat.query("todo_lists", "get")) == {"todo_lists"}
    assert query_reads(model.con, cat.query("stream", "events_per_minute")) == {"stream_counts"}
    assert query_reads(model.con, cat.query("analytics", "totals")) == {EVERY}
