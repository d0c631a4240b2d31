"""What a projection is: its tables, its version, how it applies a batch, what it answers.

A projection applies a whole batch of stored events with a few bulk statements inside the
transaction the read model opens (never one statement per event), and answers named
queries with plain SQL over its own tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import duckdb

from common.envelope import Envelope

Query = Callable[[duckdb.DuckDBPyConnection, dict[str, Any]], Any]


class Projection(Protocol):
    name: str
    version: int
    tables: tuple[str, ...]
    ddl: tuple[str, ...]
    queries: dict[str, Query]

    def apply(self, con: duckdb.DuckDBPyConnection, events: Sequence[tuple[int, Envelope]]) -> None:
        """Apply events (sequence, envelope) in order; the caller holds the transaction."""
        ...


def rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts named by column."""
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
