"""The contract every loaded app holds to, checked over every aggregate and projection.

Apps: the example (`examples.todo`), the second app (`tests.apps.inventory`) and the app
`ironstar new` scaffolds. For each: the catalogue is complete and consistent; every
aggregate type has a feed snapshot whose queries exist; every read has a scope of its
projection's grant (never `admin`: the door lets it through to
`gateway/grants.py`); every query has its parameters and result in the
OpenAPI document and runs on empty tables; every stored schema upcasts to the current one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from common import catalogue
from common.catalogue import Catalogue
from common.errors import NotFound
from common.settings import GatewaySettings, NatsSettings
from gateway.app import create_app
from gateway.auth import needed_scopes
from gateway.grants import read_grant
from gateway.openapi import complete
from gateway.reads import read_path
from ironstar.scaffold import write_app
from projector.readmodel import ReadModel
from projector.sql import encode

APPS = ["examples.todo", "tests.apps.inventory", "scaffolded"]


@pytest.fixture(params=APPS)
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalogue]:
    name = request.param
    if name == "scaffolded":
        root = tmp_path_factory.mktemp("scaffold")
        write_app(root, "billing")
        sys.path.insert(0, str(root))
        name = "billing"
    previous = catalogue.current()
    try:
        yield catalogue.install(catalogue.load(name))
    finally:
        catalogue.install(previous)


def _sample(params: type[msgspec.Struct]) -> dict[str, Any]:
    """A value for every required parameter (strings 'x', numbers 1)."""
    schema = msgspec.json.schema(params)
    struct = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    samples = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}
    return {
        name: samples.get(prop.get("type"), "x")
        for name, prop in struct.get("properties", {}).items()
        if name in struct.get("required", ())
    }


def test_the_catalogue_is_complete_and_consistent(app: Catalogue) -> None:
    assert app.check() == []
    assert set(app.feeds) == set(app.aggregates)


def test_every_topic_has_a_snapshot_from_queries_that_exist(app: Catalogue) -> None:
    for name in app.aggregates:
        feed = app.feeds[name]
        assert app.query(feed.projection, feed.one).key
        if feed.every:
            app.query(feed.projection, feed.every)


def test_every_read_needs_its_projections_grant_not_admin(app: Catalogue) -> None:
    for projection in app.projections.values():
        for name, query in projection.queries.items():
            params = {k: str(v) for k, v in _sample(query.params).items()}
            assert needed_scopes("GET", read_path(projection.name, name), params) == []
            expected = projection.scope + (f":{params[query.key]}" if query.key else "")
            assert read_grant(projection.name, params, name) == expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Litestar's inferred dependencies
def test_every_query_is_in_the_openapi_document_with_its_parameters(app: Catalogue) -> None:
    gateway = create_app(NatsSettings(), GatewaySettings())
    complete(gateway, tokens_required=True)
    paths = gateway.openapi_schema.to_schema()["paths"]
    for projection in app.projections.values():
        for name, query in projection.queries.items():
            operation = paths[read_path(projection.name, name)]["get"]
            documented = {p["name"] for p in operation["parameters"]}
            assert set(query.params.__struct_fields__) | {"min_seq"} <= documented
            answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert answer["required"] == ["sequence", "result"]
            if query.result is None:  # rows: one object with one=True, else an array
                kind = answer["properties"]["result"]["type"]
                assert kind == ("object" if query.one else "array"), (projection.name, name)


def _seed(model: ReadModel, app: Catalogue) -> None:
    """One row in every projection table, 'x' / 1 / true / now, as `_sample` asks for."""
    values = {"VARCHAR": "'x'", "BOOLEAN": "true", "JSON": "'{}'", "DATE": "current_date"}
    for table in (t for p in app.projections.values() for t in p.tables):
        columns = model.con.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        row = [
            values.get(kind, "now()" if kind.startswith("TIMESTAMP") else "1")
            for (kind,) in columns
        ]
        model.con.execute(f"INSERT INTO {table} VALUES ({', '.join(row)})")


@pytest.mark.parametrize("seeded", [False, True], ids=["empty", "one row per table"])
def test_every_projection_applies_to_a_fresh_file_and_every_query_answers_its_documented_shape(
    app: Catalogue, tmp_path: Path, seeded: bool
) -> None:
    model = ReadModel(tmp_path / "contract.duckdb", catalogue=app)
    if seeded:
        _seed(model, app)
    try:
        for projection in app.projections.values():
            for name, query in projection.queries.items():
                params = app.params(projection.name, name, _sample(query.params))
                try:
                    answer = model.query(projection.name, name, params)
                except NotFound:
                    assert query.one  # only a single-row query may find nothing
                    continue
                # As a client reads it: the JSON the projector sends, as the OpenAPI type.
                msgspec.json.decode(encode(answer), type=query.answer_type)
    finally:
        model.close()


def test_every_older_schema_has_upcasters_up_to_the_current_one(app: Catalogue) -> None:
    for aggregate in app.aggregates.values():
        for event_type, current in aggregate.schemas.items():
            for schema in range(1, current):
                assert (event_type, schema) in aggregate.upcasters
