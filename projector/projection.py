"""The engine side of a projection (`common.app.Projection`): apply a batch, answer queries.

A batch is staged once (`projector/staging.py`) and every projection applies it inside
the transaction the read model opens: SQL projections run their statements over `batch`,
Python hooks get the events. Queries run on their own cursor: a `Query`'s SQL with its
typed parameters bound by name, or its Python function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec

from common.app import Batch, Projection, Query, Unapplicable
from common.builtin import VERSIONS_NAME
from common.envelope import Stored
from common.errors import NotFound
from projector.hook_cursor import HookCursor
from projector.staging import Staged, stage, unstage
from projector.versions import Versions

__all__ = ["Failed", "Unapplicable", "answer", "apply"]
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class Failed(Exception):
    """Projection `projection` raised `error` applying a batch (not `Unapplicable`, and
    not the `versions` check, whose failures are every projection's)."""

    def __init__(self, projection: str, error: Exception) -> None:
        super().__init__(f"{projection}: {type(error).__name__}: {error}")
        self.projection = projection
        self.error = error


def apply(
    con: duckdb.DuckDBPyConnection,
    versions: Versions,
    projections: Sequence[Projection],
    batch: Staged,
    events: Sequence[Stored] | None,
    preceding: str,
    machine: tuple[type[BaseException], ...] = (),
) -> set[str]:
    """Apply the staged `batch` (`projector/staging.py`; in stream order, none applied
    before) to `projections`; the caller holds the transaction. `events` are its envelopes,
    for Python hooks (None: there is no hook). Returns the names of the projections that
    changed (a SQL projection whose statements changed no row did not; a hook is assumed
    to have). Raises `Unapplicable` naming an event that cannot be applied (with
    `projection` set when only that projection cannot, e.g. a hook's), or `Failed` naming
    the projection that raised anything else; errors of `machine` pass as they are."""
    if not batch.sequences:
        return set()
    changed: set[str] = set()
    stage(con, batch)
    try:
        for projection in projections:
            if projection.name == VERSIONS_NAME:  # the engine's: order and evolve
                versions.fold(con, batch)
                changed.add(projection.name)
                continue
            if not projection.reads(batch.present):  # none of its `events`: skipped
                continue
            try:
                if isinstance(projection.apply, tuple):
                    for statement in projection.apply:
                        if _rows_changed(con.execute(statement)):
                            changed.add(projection.name)
                else:  # a hook raises Unapplicable(sequence, why) for an event it cannot read
                    assert events is not None, "a hook needs the batch's envelopes"
                    cursor = HookCursor(con, projection.name, projection.tables)
                    projection.apply(cursor, Batch(events, preceding))
                    changed.add(projection.name)
            except Unapplicable as exc:
                exc.projection = projection.name
                raise
            except machine:
                raise
            except Exception as exc:  # the app's SQL or hook: this projection's failure
                raise Failed(projection.name, exc) from exc
    finally:
        unstage(con)
    return changed


def _rows_changed(result: duckdb.DuckDBPyConnection) -> bool:
    """Whether a statement changed rows: INSERT, UPDATE and DELETE answer one row holding
    their count; anything else (DDL, a SELECT) counts as a change, to be safe."""
    if [d[0] for d in result.description or ()] != ["Count"]:
        return True
    rows = result.fetchall()
    return not (len(rows) == 1 and rows[0][0] == 0)


def answer(cursor: duckdb.DuckDBPyConnection, query: Query, params: Any) -> Any:
    """The answer of `query` with its typed `params` (a Struct), as plain builtins: a list
    of row objects, or one object with `one=True` (NotFound, 404 with the query's `missing`
    message, when there is no row)."""
    if query.run is not None:
        return query.run(cursor, params)
    values = msgspec.structs.asdict(params)
    used = {name: values[name] for name in _PARAM.findall(query.sql) if name in values}
    result = cursor.execute(query.sql, used)
    names = [d[0] for d in result.description or ()]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    if not query.one:
        return rows
    if not rows:
        raise NotFound(query.missing.format(**values), field=query.key)
    return rows[0]
