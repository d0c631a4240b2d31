"""The contract every app holds to, for an app author's own tests: `contract(app)`.

`ironstar new` writes a test that calls it; tests/unit/test_app_contract.py runs it over
every app Ironstar ships and the one `IRONSTAR_APP` names. It raises AssertionError naming
the first broken part of the contract:

- the catalogue check (common/catalogue.py) finds nothing, and every aggregate type has a
  feed whose snapshot queries exist (its `one` query has a key);
- every read needs a scope of its projection's grant, never `admin` (the door lets it
  through to gateway/security/grants.py);
- every query is in the OpenAPI document with its parameters and a result;
- every query is documented with the shape it answers (one object for `one=True`, else an
  array, unless it declares its `result`);
- every projection applies to a fresh DuckDB file and every query runs, on empty tables and
  on one row in every table, answering JSON of its documented type (only a single-row query
  may find nothing);
- every older event schema has upcasters up to the current one;
- with `App.events`, its first 40 events give the app's tables the same rows applied in one
  batch and one per batch, none a dead letter (docs/extending.md, Batch independence).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from common import catalogue
from common.app import App
from common.catalogue import Catalogue
from common.errors import NotFound
from common.settings import GatewaySettings, NatsSettings
from gateway.api.openapi import complete
from gateway.api.reads import read_path
from gateway.app import create_app
from gateway.security.auth import needed_scopes
from gateway.security.grants import read_grant
from projector.readmodel import ReadModel
from projector.sql import encode

__all__ = ["contract"]
EVENTS = 40  # of `App.events`, applied in one batch and one per batch


def contract(app: App) -> None:
    """Check `app` against the contract; AssertionError naming what is broken."""
    problems = Catalogue(app).check()
    assert not problems, f"app {app.name}: {problems[0]}"
    with _installed(Catalogue(app)) as cat:
        _feeds(cat)
        _grants(cat)
        _openapi(cat)
        _queries_run(cat)
        _upcasters(cat)
    _batch_independent(app)


def _batch_independent(app: App) -> None:
    from ironstar.testing import Projected, same_alone  # it imports this module

    if app.events is None:
        return
    told = list(islice(app.events(EVENTS, 1), EVENTS))
    same_alone(app, told, Projected(app, told))


@contextmanager
def _installed(cat: Catalogue) -> Iterator[Catalogue]:
    """`cat` as this process's catalogue (the gateway reads it) for the checks' time."""
    previous = catalogue.current()
    try:
        yield catalogue.install(cat)
    finally:
        catalogue.install(previous)


def sample(params: type[msgspec.Struct]) -> dict[str, Any]:
    """A value for every required parameter (strings 'x', numbers 1)."""
    schema = msgspec.json.schema(params)
    struct = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    samples = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}
    return {
        name: samples.get(prop.get("type"), "x")
        for name, prop in struct.get("properties", {}).items()
        if name in struct.get("required", ())
    }


def _feeds(cat: Catalogue) -> None:
    missing = set(cat.aggregates) - set(cat.feeds)
    assert not missing, f"aggregate types without a Feed: {', '.join(sorted(missing))}"
    for name, feed in cat.feeds.items():
        assert cat.query(feed.projection, feed.one).key, f"feed {name}: {feed.one} has no key"
        if feed.every:
            cat.query(feed.projection, feed.every)


def _grants(cat: Catalogue) -> None:
    for projection in cat.projections.values():
        for name, query in projection.queries.items():
            params = {k: str(v) for k, v in sample(query.params).items()}
            path = read_path(projection.name, name)
            assert needed_scopes("GET", path, params) == [], f"{path} needs more than a grant"
            expected = projection.scope + (f":{params[query.key]}" if query.key else "")
            granted = read_grant(projection.name, params, name)
            assert granted == expected, f"{path} needs {granted!r}, not {expected!r}"


def _openapi(cat: Catalogue) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Litestar's inferred dependencies
        gateway = create_app(NatsSettings(), GatewaySettings())
        complete(gateway, tokens_required=True)
        paths = gateway.openapi_schema.to_schema()["paths"]
    for projection in cat.projections.values():
        for name, query in projection.queries.items():
            path = read_path(projection.name, name)
            assert path in paths, f"{path} is not in the OpenAPI document"
            operation = paths[path]["get"]
            documented = {p["name"] for p in operation["parameters"]}
            wanted = set(query.params.__struct_fields__) | {"min_seq"}
            assert wanted <= documented, f"{path} documents no {sorted(wanted - documented)}"
            answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert answer["required"] == ["sequence", "result"], f"{path}'s answer: {answer}"
            if query.result is None:  # rows: one object with one=True, else an array
                documented_type = answer["properties"]["result"].get("type")
                answered = "object" if query.one else "array"
                assert documented_type == answered, (
                    f"{path} documents {documented_type}, answers {answered}"
                )


def _queries_run(cat: Catalogue) -> None:
    for seeded in (False, True):
        with tempfile.TemporaryDirectory() as where:
            model = ReadModel(Path(where) / "contract.duckdb", catalogue=cat)
            try:
                if seeded:
                    _seed(model, cat)
                for projection in cat.projections.values():
                    for name in projection.queries:
                        _answers_its_shape(model, cat, projection.name, name, seeded)
            finally:
                model.close()


def _answers_its_shape(
    model: ReadModel, cat: Catalogue, projection: str, name: str, seeded: bool
) -> None:
    """The query runs, and its answer, as the JSON a client reads, has the documented type."""
    query = cat.query(projection, name)
    tables = "one row in every table" if seeded else "empty tables"
    params = cat.params(projection, name, sample(query.params))
    try:
        answer = model.query(projection, name, params)
    except NotFound:
        assert query.one, f"{projection}/{name} found nothing on {tables}"
        return
    try:
        msgspec.json.decode(encode(answer), type=query.answer_type)
    except msgspec.ValidationError as exc:
        raise AssertionError(f"{projection}/{name} on {tables}: not its result ({exc})") from None


def _seed(model: ReadModel, cat: Catalogue) -> None:
    """One row in every projection table: 'x' / 1 / true / now, the values `sample` asks for
    (an empty list in a LIST column)."""
    values = {"VARCHAR": "'x'", "BOOLEAN": "true", "JSON": "'{}'", "DATE": "current_date"}
    for table in (t for p in cat.projections.values() for t in p.tables):
        columns = model.con.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        row = [
            "[]"
            if sql_type.endswith("[]")
            else values.get(sql_type, "now()" if sql_type.startswith("TIMESTAMP") else "1")
            for (sql_type,) in columns
        ]
        model.con.execute(f"INSERT INTO {table} VALUES ({', '.join(row)})")


def _upcasters(cat: Catalogue) -> None:
    for aggregate in cat.aggregates.values():
        for event_type, current in aggregate.schemas.items():
            for schema in range(1, current):
                assert (event_type, schema) in aggregate.upcasters, (
                    f"{aggregate.name}: no upcaster for {event_type} schema {schema}"
                )
