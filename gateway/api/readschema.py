"""The OpenAPI document of the catalogue's reads: each query's parameters and result.

Read routes take their parameters from the query string by hand (they come from the
app), so Litestar cannot see them; this adds, to every `/api/read/{projection}/{query}`
operation and every alias, the query's typed parameters (from its `params` Struct) and
its answer `{"sequence", "result"}` with the query's `result` type, as JSON Schema made
by msgspec and put into the document's components.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)

from common.app import Query
from common.catalogue import Catalogue
from gateway.api.reads import MIN_SEQ, read_path

_REF = "#/components/schemas/{name}"
_KEYS = {
    "anyOf": "any_of",
    "oneOf": "one_of",
    "allOf": "all_of",
    "additionalProperties": "additional_properties",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
}
_MIN_SEQ = Parameter(
    name=MIN_SEQ,
    param_in="query",
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0, default=0),
    description="answer only once the read model has applied this stream sequence",
)


def schema(data: Any) -> Any:
    """A msgspec JSON Schema (dict) as Litestar's OpenAPI objects."""
    if isinstance(data, list):
        return [schema(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "$ref" in data:
        return Reference(ref=data["$ref"])
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _KEYS.get(key, key)
        if key == "type":
            value = (
                [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif key == "properties":
            value = {k: schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf") or (
            key == "additionalProperties" and isinstance(value, dict)
        ):
            value = schema(value)
        if name in Schema.__dataclass_fields__:
            fields[name] = value
    return Schema(**fields)


def document(openapi: OpenAPI, cat: Catalogue) -> None:
    """Add every read's parameters and answer schema to `openapi` (in place)."""
    reads: list[tuple[str, list[Query], frozenset[str]]] = [
        (read_path(p.name, name), [query], frozenset())
        for p in cat.projections.values()
        for name, query in p.queries.items()
    ]
    for template, (projection, name) in cat.app.aliases.items():
        path = template.replace("{query}", "{query_name}")
        known = cat.projections[projection].queries
        chosen = list(known.values()) if "{query}" in template else [known[name]]
        reads.append((path, chosen, frozenset(_path_params(template))))
    types = [t for _, queries, _ in reads for q in queries for t in (q.params, q.answer_type)]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    openapi.components = openapi.components or Components()
    openapi.components.schemas = {
        **(openapi.components.schemas or {}),
        **{k: schema(v) for k, v in components.items()},
    }
    index = iter(refs)
    for path, queries, in_path in reads:
        item = (openapi.paths or {}).get(path)
        if item is None or item.get is None:
            continue
        results = []
        params: dict[str, Parameter] = {}
        for _ in queries:
            params.update(_parameters(components, next(index), in_path, len(queries) == 1))
            results.append(schema(next(index)))
        in_path_params = [
            p
            for p in item.get.parameters or []
            if isinstance(p, Parameter) and p.param_in == "path"
        ]
        _describe(item.get, [*in_path_params, _MIN_SEQ, *params.values()], results)


def _path_params(template: str) -> list[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{")]


def _parameters(
    components: dict[str, Any], ref: dict[str, Any], in_path: frozenset[str], strict: bool
) -> dict[str, Parameter]:
    struct = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(struct.get("required", ())) if strict else set()
    return {
        name: Parameter(name=name, param_in="query", schema=schema(prop), required=name in required)
        for name, prop in struct.get("properties", {}).items()
        if name not in in_path
    }


# Present only when a list in the answer was cut to fit its bound (projector.answers).
_TRUNCATED = Schema(
    type=OpenAPIType.OBJECT,
    description="present when a list was cut to fit: which field, how many kept of how many",
    required=["field", "returned", "total", "max_bytes"],
    properties={
        "field": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),  # null: the result itself
        "returned": Schema(type=OpenAPIType.INTEGER),
        "total": Schema(type=OpenAPIType.INTEGER),
        "max_bytes": Schema(type=OpenAPIType.INTEGER),
    },
)


def _describe(operation: Operation, parameters: list[Parameter], results: list[Any]) -> None:
    operation.parameters = list(parameters)
    result = results[0] if len(results) == 1 else Schema(any_of=results)
    answer = Schema(
        type=OpenAPIType.OBJECT,
        required=["sequence", "result"],
        properties={
            "sequence": Schema(type=OpenAPIType.INTEGER),
            "result": result,
            "truncated": _TRUNCATED,
        },
    )
    responses = dict(operation.responses or {})
    content = {"application/json": OpenAPIMediaType(schema=answer)}
    responses["200"] = OpenAPIResponse(
        description="the answer and the sequence it is at", content=content
    )
    operation.responses = responses
