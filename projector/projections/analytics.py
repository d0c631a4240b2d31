"""`analytics`: what an analyst opens first.

Table `event_counts`: per minute, aggregate type and event type, the events and the
commands (a command is counted under the type of its first event). A command's events are
appended as one atomic batch, so they are adjacent in the stream: a change of `command_id`
starts the next command, and the read model carries the last one across batches.
Views: `commands_per_minute`, `throughput` (events and commands per minute and per
second) and `todos_over_time` (active and completed todos at the end of each minute, from
`todo_lists`' `todo_changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from projector.projection import Event, Query, minute, rows
from projector.projections.bulk import add_counts

name = "analytics"
version = 2
tables = ("event_counts",)
ddl = (
    """CREATE TABLE IF NOT EXISTS event_counts (
        minute TIMESTAMPTZ NOT NULL,
        aggregate_type VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        events BIGINT NOT NULL,
        commands BIGINT NOT NULL,
        PRIMARY KEY (minute, aggregate_type, event_type)
    )""",
    """CREATE OR REPLACE VIEW commands_per_minute AS
        SELECT minute, aggregate_type, sum(commands)::BIGINT AS commands FROM event_counts
        GROUP BY minute, aggregate_type""",
    """CREATE OR REPLACE VIEW throughput AS
        SELECT minute, sum(events)::BIGINT AS events, sum(commands)::BIGINT AS commands,
               round(sum(events) / 60.0, 3) AS events_per_second,
               round(sum(commands) / 60.0, 3) AS commands_per_second
        FROM event_counts GROUP BY minute""",
    """CREATE OR REPLACE VIEW todos_over_time AS
        SELECT minute,
               sum(active_delta) OVER (ORDER BY minute)::BIGINT AS active,
               sum(completed_delta) OVER (ORDER BY minute)::BIGINT AS completed
        FROM todo_changes""",
)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    counts: dict[tuple[str, str, str], list[int]] = {}
    previous = preceding
    for _, e in events:
        key = (minute(e.occurred_at), e.aggregate_type, e.event_type)
        count = counts.get(key)
        if count is None:
            count = counts[key] = [0, 0]
        count[0] += 1
        if e.metadata.command_id != previous:
            count[1] += 1
            previous = e.metadata.command_id
    add_counts(
        con,
        "event_counts",
        dict.fromkeys(("minute", "aggregate_type", "event_type"), pa.string()),
        counts,
        ("events", "commands"),
    )


def _since(params: dict[str, Any]) -> int:
    return max(1, min(int(params.get("minutes", 60)), 10_080))


def events_per_minute(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any]
) -> list[dict[str, Any]]:
    return rows(
        con,
        "SELECT minute, aggregate_type, event_type, events FROM event_counts "
        "WHERE minute >= (SELECT max(minute) FROM event_counts) - to_minutes(CAST(? AS BIGINT)) "
        "ORDER BY minute, aggregate_type, event_type",
        [_since(params)],
    )


def _recent_view(view: str) -> Query:
    def run(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
        return rows(
            con,
            f"SELECT * FROM {view} WHERE minute >= (SELECT max(minute) FROM {view}) "
            "- to_minutes(CAST(? AS BIGINT)) ORDER BY minute",
            [_since(params)],
        )

    return run


def totals(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, Any]:
    by_type = rows(
        con,
        "SELECT event_type, sum(events)::BIGINT AS events, sum(commands)::BIGINT AS commands "
        "FROM event_counts "
        "GROUP BY event_type ORDER BY event_type",
    )
    todos = rows(
        con,
        "SELECT count(*) FILTER (NOT deleted AND NOT completed) AS active, "
        "count(*) FILTER (NOT deleted AND completed) AS completed FROM todos",
    )[0]
    return {
        "events_by_type": by_type,
        "events": sum(r["events"] for r in by_type),
        "commands": sum(r["commands"] for r in by_type),
        **todos,
    }


queries: dict[str, Query] = {
    "events_per_minute": events_per_minute,
    "commands_per_minute": _recent_view("commands_per_minute"),
    "throughput": _recent_view("throughput"),
    "todos_over_time": _recent_view("todos_over_time"),
    "totals": totals,
}
