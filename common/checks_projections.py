"""One projection's declarations and its queries, as `Catalogue.check` sees them.

A version int ≥ 1; `ddl`, `tables` and a SQL `apply` tuples of text (or `apply` a plain
function); no table or name of Ironstar's own; a grant the scope grammar can grant
(`common.tokens.SCOPE`); each `Query` with exactly one of `sql=` (one SELECT) or `run=`,
a `params` Struct whose fields a query string can carry, and a `key` among them. The
SQL itself runs against DuckDB in `projector.app_sql`; a table in two projections is
`common.checks`'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from msgspec import inspect

from common.app import Projection, Query
from common.checks_functions import plain
from common.checks_names import ENGINE_TABLES, RESERVED, select_problems, texts
from common.tokens import SCOPE

# What a query string carries: one value per name, as text msgspec converts.
_SCALAR = (inspect.StrType, inspect.IntType, inspect.FloatType, inspect.BoolType,
           inspect.LiteralType, inspect.NoneType)  # fmt: skip


def projection_problems(projection: Projection) -> Iterator[str]:
    """Every problem of `projection`'s own declarations and of its queries, one line each."""
    where = f"projection {projection.name}"
    if projection.name in RESERVED:
        yield f"projection name {projection.name!r} is reserved"
    if type(projection.version) is not int or projection.version < 1:
        yield f"{where}: version must be an int ≥ 1, got {projection.version!r}"
    if not texts(projection.ddl):
        yield f"{where}: ddl must be a tuple of SQL statements"
    if not texts(projection.tables):
        yield f"{where}: tables must be a tuple of table names"
    for table in sorted(ENGINE_TABLES.intersection(projection.tables or ())):
        yield f"{where}: table {table} is Ironstar's own"
    if callable(projection.apply):
        yield from plain(f"{where}: apply", projection.apply, "(cursor, batch)")
    elif not texts(projection.apply):
        yield f"{where}: apply must be a tuple of SQL statements or a function (cursor, batch)"
    if not isinstance(projection.grant, str) or not SCOPE.fullmatch(projection.scope):
        yield f"{where}: grant {projection.grant!r} cannot be granted (a scope is read:<name>)"
    if not isinstance(projection.queries, Mapping):
        yield f"{where}: queries must be a dict {{name: Query(...)}}"
        return
    for name, query in projection.queries.items():
        yield from _query(f"query {projection.name}/{name}", query)


def _query(where: str, query: Query) -> Iterator[str]:
    if not isinstance(query, Query):
        yield f"{where} must be a Query(...)"
        return
    if bool(query.sql) == (query.run is not None):
        yield f"{where} needs exactly one of sql= or run="
    if query.run is not None:
        yield from plain(f"{where}: run", query.run, "(cursor, params)")
    if query.sql:
        yield from select_problems(where, query.sql)
    params = query.params
    if not (isinstance(params, type) and issubclass(params, msgspec.Struct)):
        yield f"{where}: params must be a msgspec Struct class, got {params!r}"
        return
    for field in inspect.type_info(params).fields:  # type: ignore[attr-defined]
        if not _carried(field.type):
            yield (
                f"{where}: parameter {field.name} cannot come in a query string; use str, "
                "int, float, bool, a Literal, or Optional of one (bounded with Meta)"
            )
    if query.key and query.key not in params.__struct_fields__:
        yield f"{where}: key {query.key!r} is not a parameter"


def _carried(field_type: Any) -> bool:
    """A query string can carry a value of `field_type` (msgspec.inspect): a scalar, or a
    union of scalars (Optional)."""
    if isinstance(field_type, inspect.UnionType):
        return all(_carried(member) for member in field_type.types)
    return isinstance(field_type, _SCALAR)
