"""What a projection is: its schema and version, how it applies a batch, what it answers.

A projection applies a whole batch of stored events with a few bulk statements inside the
transaction the read model opens (never one statement per event), and answers named
queries with plain SQL over its own tables. Its `version` is stored in the file; a code
version different from the file's rebuilds the projection (see `projector/rebuild.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import duckdb

from common.domain import AGGREGATES
from common.domain.upcasting import upcast
from common.envelope import Envelope

Query = Callable[[duckdb.DuckDBPyConnection, dict[str, Any]], Any]
Event = tuple[int, Envelope]


class Projection(Protocol):
    name: str
    version: int
    tables: tuple[str, ...]  # dropped and created again by a rebuild
    ddl: tuple[str, ...]  # CREATE TABLE / VIEW IF NOT EXISTS: the schema
    queries: dict[str, Query]

    def apply(
        self, con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str
    ) -> None:
        """Apply events (sequence, envelope) in order; the caller holds the transaction.
        `preceding` is the command id of the event just before the batch ("" if none).

        Raise `Unapplicable` naming the event that cannot be applied; nothing of the
        batch is kept then, and the read model retries it without that event.
        """
        ...


class Unapplicable(Exception):
    """An event a projection cannot apply (a payload it does not understand)."""

    def __init__(self, sequence: int, error: str) -> None:
        super().__init__(f"sequence {sequence}: {error}")
        self.sequence = sequence
        self.error = error


def each(events: Sequence[Event], step: Callable[[int, Envelope], None]) -> None:
    """Run `step` per event, turning a payload it cannot read into `Unapplicable`."""
    for sequence, event in events:
        try:
            step(sequence, event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Unapplicable(sequence, f"{event.event_type}: {exc!r}") from exc


_CURRENT = {
    (name, event_type): schema
    for name, aggregate in AGGREGATES.items()
    for event_type, schema in aggregate.schemas.items()
}


def payload(event: Envelope) -> dict[str, Any]:
    """The event's payload in its current schema (older stored schemas upcast)."""
    current = _CURRENT.get((event.aggregate_type, event.event_type), 1)
    if event.schema >= current:
        return event.payload
    return upcast(event.event_type, event.schema, current, event.payload)


def minute(occurred_at: str) -> str:
    """`2026-01-02T03:04:05.678Z` → `2026-01-02T03:04:00Z` (RFC 3339 UTC, by slicing)."""
    return occurred_at[:16] + ":00Z"


def rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts named by column."""
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
