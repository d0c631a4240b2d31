"""`versions`: the last version of every aggregate, so an event that is not its
aggregate's next version (a repeat, a gap, one published around the writer) is refused
here as the writer refuses it (`writer/handler.py`), and dead-lettered.

One lookup per batch of the aggregates it touches (a hash join against a table of one row
per aggregate), then one INSERT of the new aggregates and one UPDATE of the others. The
read model runs this projection with every batch, also when only others are rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from projector.projection import Event, Query, Unapplicable
from projector.projections.bulk import insert, lookup, update

name = "versions"
version = 1
tables = ("aggregate_versions",)
ddl = (
    # No primary key: a row is appended at an aggregate's first event (see bulk.py).
    """CREATE TABLE IF NOT EXISTS aggregate_versions (
        aggregate_type VARCHAR NOT NULL,
        aggregate_id VARCHAR NOT NULL,
        version BIGINT NOT NULL
    )""",
)
_KEY = {"aggregate_type": pa.string(), "aggregate_id": pa.string()}
_COLUMNS = {**_KEY, "version": pa.int64()}


def apply(con: duckdb.DuckDBPyConnection, events: Sequence[Event], preceding: str) -> None:
    """Raise `Unapplicable` at the first event whose version is not its aggregate's next."""
    if not events:
        return
    touched = sorted({(e.aggregate_type, e.aggregate_id) for _, e in events})
    found = lookup(con, "aggregate_versions", _KEY, touched,
                   "t.aggregate_type, t.aggregate_id, t.version")  # fmt: skip
    known = {(kind, key): last for kind, key, last in found}
    last = dict(known)
    for sequence, e in events:
        key = (e.aggregate_type, e.aggregate_id)
        expected = last.get(key, 0) + 1
        if e.version != expected:
            raise Unapplicable(
                sequence, f"version {e.version} of {key[0]} {key[1]!r}: its next is {expected}"
            )
        last[key] = expected
    rows = [{"aggregate_type": k[0], "aggregate_id": k[1], "version": v} for k, v in last.items()]
    insert(con, "aggregate_versions", _COLUMNS, [r for r in rows if _key(r) not in known])
    update(con, "aggregate_versions", tuple(_KEY), _COLUMNS,
           [r for r in rows if _key(r) in known], "version = b.version")  # fmt: skip


def _key(row: dict[str, object]) -> tuple[object, object]:
    return row["aggregate_type"], row["aggregate_id"]


queries: dict[str, Query] = {}
