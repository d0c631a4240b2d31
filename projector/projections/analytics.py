"""`analytics`: what an analyst opens first — event counts per type per minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from common.envelope import Envelope
from projector.projection import Query, rows

name = "analytics"
version = 1
tables = ("event_counts",)
ddl = (
    """CREATE TABLE IF NOT EXISTS event_counts (
        minute TIMESTAMPTZ NOT NULL,
        aggregate_type VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        events BIGINT NOT NULL,
        PRIMARY KEY (minute, aggregate_type, event_type)
    )""",
)


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[tuple[int, Envelope]]) -> None:
    # occurred_at is RFC 3339 UTC: its first 16 characters name the minute.
    counts = Counter(
        (e.occurred_at[:16] + ":00Z", e.aggregate_type, e.event_type) for _, e in events
    )
    if not counts:
        return
    minute, aggregate_type, event_type = zip(*counts, strict=True)
    batch = pa.table(
        {
            "minute": list(minute),
            "aggregate_type": list(aggregate_type),
            "event_type": list(event_type),
            "events": list(counts.values()),
        }
    )
    con.register("_counts", batch)
    try:
        con.execute(
            "INSERT INTO event_counts SELECT CAST(minute AS TIMESTAMPTZ), aggregate_type, "
            "event_type, events FROM _counts ON CONFLICT DO UPDATE SET "
            "events = event_counts.events + excluded.events"
        )
    finally:
        con.unregister("_counts")


def per_minute(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
    minutes = int(params.get("minutes", 60))
    return rows(
        con,
        "SELECT minute, event_type, events FROM event_counts "
        "WHERE minute >= (SELECT max(minute) FROM event_counts) - to_minutes(CAST(? AS BIGINT)) "
        "ORDER BY minute, event_type",
        [minutes],
    )


def totals(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> dict[str, Any]:
    by_type = rows(
        con,
        "SELECT event_type, sum(events)::BIGINT AS events FROM event_counts "
        "GROUP BY event_type ORDER BY event_type",
    )
    todos = rows(
        con,
        "SELECT count(*) FILTER (NOT deleted AND NOT completed) AS active, "
        "count(*) FILTER (NOT deleted AND completed) AS completed FROM todos",
    )[0]
    return {"events_by_type": by_type, "events": sum(r["events"] for r in by_type), **todos}


queries: dict[str, Query] = {"events_per_minute": per_minute, "totals": totals}
