"""Complete the generated OpenAPI document with what the handlers cannot say themselves.

Litestar sees `Response[bytes]` handlers and raw request bodies, so on its own the schema
would promise strings where JSON objects come back, no request bodies, and none of the
error statuses the gateway maps in one table. `complete` adds, for every operation: the
error body of `gateway/api/errors.py` under each status it can answer; JSON objects for raw
JSON replies; the command and SQL request bodies; and, when tokens are required, the
bearer scheme (public paths say `security: []`). Schemathesis holds us to this document.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)

from common import catalogue
from gateway.api import readschema
from gateway.security.auth import credentials

ERRORS = {
    "400": "malformed JSON or bad parameter",
    "401": "no token, or one that is expired or wrongly signed",
    "403": "the token does not grant this",
    "404": "unknown aggregate type, command, projection or query",
    "408": "the request body arrived too slowly",
    "409": "a domain rule was broken, writers kept conflicting, or command_id was reused",
    "412": "stale If-Match",
    "413": "body, field or nesting over its limit",
    "414": "the path and query are over 8 KiB",
    "422": "invalid id, payload field or parameter (named in `field`)",
    "429": "too many requests from this client; see Retry-After",
    "431": "a request header, or all of them, over its limit",
    "503": "NATS, the writer or a projector is unavailable; see Retry-After",
    "504": "the read model did not reach min_seq in time",
}
COMMANDS = "/api/commands/{aggregate_type}/{aggregate_id}"
UNDECIDABLE = (
    "`undecidable`: the aggregate's history holds an event this writer cannot read (its "
    "`sequence` named); not retryable"
)
_OBJECT = Schema(type=OpenAPIType.OBJECT)
_TEXT = Schema(type=OpenAPIType.STRING)
_NULLABLE_TEXT = Schema(one_of=[_TEXT, Schema(type=OpenAPIType.NULL)])
ERROR_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["error", "message"],
    properties={"error": _TEXT, "message": _TEXT},
)
BODIES = {
    COMMANDS: Schema(
        type=OpenAPIType.OBJECT,
        required=["type"],
        properties={
            "type": _TEXT,
            "payload": Schema(one_of=[_OBJECT, Schema(type=OpenAPIType.NULL)]),
            "command_id": _NULLABLE_TEXT,
        },
        additional_properties=False,
    ),
    "/api/sql": Schema(type=OpenAPIType.OBJECT, required=["sql"], properties={"sql": _TEXT}),
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def complete(app: Litestar, tokens_required: bool) -> None:
    """Amend the app's OpenAPI document in place (call before it is first served)."""
    openapi = app.openapi_schema
    readschema.document(openapi, catalogue.current())
    if tokens_required:
        openapi.components = openapi.components or Components()
        openapi.components.security_schemes = {
            "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
        }
        openapi.security = [{"bearer": []}]
    for path, item in (openapi.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method, None)
            if operation is not None:
                _amend(path, method.upper(), operation, tokens_required)


def _amend(path: str, method: str, operation: Operation, tokens_required: bool) -> None:
    responses: dict[str, Any] = dict(operation.responses or {})
    for status, response in responses.items():
        if status == "204":
            response.content = None
            continue
        for media in (response.content or {}).values():
            if media.schema == _TEXT and path.startswith("/api/") and "events" not in path:
                media.schema = _OBJECT  # a JSON reply passed through as bytes
    for status, description in ERRORS.items():
        content = {"application/json": OpenAPIMediaType(schema=ERROR_BODY)}
        responses[status] = OpenAPIResponse(description=description, content=content)
    if path == COMMANDS:
        content = {"application/json": OpenAPIMediaType(schema=ERROR_BODY)}
        responses["500"] = OpenAPIResponse(description=UNDECIDABLE, content=content)
    operation.responses = responses
    if path in BODIES and method == "POST":
        content = {"application/json": OpenAPIMediaType(schema=BODIES[path])}
        operation.request_body = RequestBody(content=content, required=True)
    if tokens_required and credentials(method, path) == "none":
        operation.security = []
