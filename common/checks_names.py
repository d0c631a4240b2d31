"""The names an app declares, and the SQL text of its queries, as `Catalogue.check` sees them.

Names (the app's, its aggregates', projections' and panels') are lowercase snake_case,
unique, and none is one of Ironstar's own (`ENGINE_TABLES`, `RESERVED`, the built-in
projections). A query's `sql=` must parse as one SELECT; what it reads and whether it
runs is checked against DuckDB by `projector.app_sql`. Also the two small shapes every
declaration check uses: a tuple of texts and an error as one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import duckdb

from common import builtin

if TYPE_CHECKING:
    from common.catalogue import Catalogue

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENGINE_TABLES = frozenset({"checkpoint", "dead_letters", "projection_versions"})
RESERVED = frozenset({"sql", "snapshot", "rebuild", "live"})


def name_problems(cat: Catalogue) -> Iterator[str]:
    """The app's, its aggregates' and its projections' names: snake_case, unique, and not
    one of Ironstar's built-in projections."""
    app = cat.app
    if not isinstance(app.name, str) or not NAME.fullmatch(app.name):
        yield f"App name {app.name!r} must be lowercase snake_case ([a-z][a-z0-9_]*, ≤ 64)"
    if not app.aggregates:
        yield "declares no aggregate"
    names = [a.name for a in app.aggregates] + [p.name for p in app.projections]
    for own in builtin.BUILT_IN:
        if own.name in (p.name for p in app.projections):
            yield f"projection name {own.name!r} is Ironstar's own"
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            yield f"name {name!r} must be lowercase snake_case ([a-z][a-z0-9_]*, ≤ 64)"
    for name in {n for n in names if names.count(n) > 1}:
        yield f"name {name!r} is declared twice"


def select_problems(where: str, sql: Any) -> Iterator[str]:
    """`sql` (a query's `sql=`) is text DuckDB parses as exactly one SELECT."""
    if not isinstance(sql, str):
        yield f"{where}: sql must be text"
        return
    try:
        kinds = [s.type.name for s in duckdb.extract_statements(sql)]
    except (duckdb.Error, ValueError) as exc:
        yield f"{where}: its SQL does not parse: {one_line(exc)}"
        return
    if kinds != ["SELECT"]:
        yield f"{where}: sql must be one read-only SELECT, got {', '.join(kinds) or 'nothing'}"


def texts(value: Any) -> bool:
    """`value` is a tuple of str (a projection's `ddl`, `tables` or SQL `apply`)."""
    return isinstance(value, tuple) and all(isinstance(item, str) for item in value)


def one_line(exc: BaseException) -> str:
    """`exc`'s message on one line, at most 200 characters (a problem is one line)."""
    return " ".join(str(exc).split())[:200]
