"""Read-model query routes, built from the catalogue: one GET per query of every projection.

`GET /api/read/{projection}/{query}` takes the query's typed parameters from the query
string (plus `min_seq`, read-your-writes) and forwards them to a projector replica. The
app's aliases (e.g. the example's `/api/todo-lists/{list_id}`) are the same reads under
another path: path segments become parameters. A parameter that is a query's `key` is an
aggregate id, checked like one (422) before it reaches a scope or a subject.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler

from common import catalogue as catalogues
from common.catalogue import Catalogue
from common.errors import Invalid, NotFound
from common.subjects import valid_id
from gateway.backend import Backend

MIN_SEQ = "min_seq"
_PATH_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
TAG = "read models"


def read_path(projection: str, query: str) -> str:
    """The route of a catalogue query: `/api/read/<projection>/<query>`."""
    return f"/api/read/{projection}/{query}"


def params_of(
    cat: Catalogue, projection: str, query: str, values: Mapping[str, str]
) -> dict[str, Any]:
    """The query's parameters from strings, the aggregate-id key checked; 422 otherwise."""
    params = {k: v for k, v in values.items() if k != MIN_SEQ}
    key = cat.query(projection, query).key
    if key and key in params:
        params[key] = valid_id(params[key], key)
    cat.params(projection, query, params)  # 422 naming the field, before any request
    return params


def min_seq(values: Mapping[str, str]) -> int:
    """The `min_seq` parameter (read-your-writes: the stream sequence the answer must include) from
    the query string; 0 when absent, 422 unless a whole number of at most 19 digits."""
    text = values.get(MIN_SEQ, "0")
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Invalid(f"min_seq must be a stream sequence ≥ 0, got {text[:40]!r}", field=MIN_SEQ)
    return int(text)


async def _read(
    backend: Backend, projection: str, query: str, values: Mapping[str, str]
) -> Response[bytes]:
    cat = catalogues.current()
    params = params_of(cat, projection, query, values)
    body = await backend.query(projection, query, params, min_seq(values))
    return Response(body, media_type=MediaType.JSON)


def _query_handler(projection: str, query: str) -> HTTPRouteHandler:
    described = catalogues.current().query(projection, query).description

    async def read(request: Request[Any, Any, Any], backend: Backend) -> Response[bytes]:
        return await _read(backend, projection, query, dict(request.query_params))

    read.__doc__ = described or f"Query {query} of projection {projection}."
    return get(
        read_path(projection, query),
        tags=[TAG],
        name=f"read:{projection}:{query}",
        operation_id=f"read_{projection}_{query}",
    )(read)


def _alias_handler(template: str, projection: str, query: str) -> HTTPRouteHandler:
    template = template.replace("{query}", "{query_name}")  # `query` is reserved by Litestar
    path = template.replace("}", ":str}")

    async def alias(
        request: Request[Any, Any, Any], backend: Backend, **path: str
    ) -> Response[bytes]:
        values = {**request.query_params, **path}
        name = values.pop("query_name", query)
        catalogues.current().query(projection, name)  # 404 naming the known queries
        return await _read(backend, projection, name, values)

    alias.__doc__ = f"Alias of `{read_path(projection, query or '{query}')}`."
    # Litestar wants every path parameter in the handler's signature: declare them.
    names = _PATH_PARAM.findall(template)
    signature = inspect.signature(alias)
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=str) for n in names]
    alias.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*list(signature.parameters.values())[:-1], *extra]  # not **path
    )
    alias.__annotations__ = {**alias.__annotations__, **dict.fromkeys(names, str)}
    return get(path, tags=[TAG], name=f"alias:{template}")(alias)


async def _unknown_read(projection: str, query_name: str = "") -> None:
    """A read of no query: 404 listing the projections, or the projection's queries."""
    catalogues.current().query(projection, query_name)  # NotFound naming the known ones
    raise NotFound(f"{projection} has no query {query_name!r}", field="query")  # a route's


def _unknown_handler() -> HTTPRouteHandler:
    paths = ["/api/read/{projection:str}", "/api/read/{projection:str}/{query_name:str}"]
    return get(paths, include_in_schema=False, name="read:unknown")(_unknown_read)


def routes(cat: Catalogue) -> list[HTTPRouteHandler]:
    """A GET per query of every projection, one per alias of the app, and the 404 naming
    the known projections or queries for any other read path."""
    handlers = [
        _query_handler(projection.name, name)
        for projection in cat.projections.values()
        for name in projection.queries
    ]
    handlers.append(_unknown_handler())
    handlers += [
        _alias_handler(template, projection, query)
        for template, (projection, query) in cat.app.aliases.items()
    ]
    return handlers
