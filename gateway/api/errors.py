"""The one table from Ironstar errors to HTTP, and the handlers that apply it.

Anything else a handler raises is a bug, never the client's fault: `_unexpected` logs it
with its traceback (structlog, `unhandled_exception`) and answers a 500 whose body says
only that, with the correlation id to find the log line — no internals.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from common import errors
from common.telemetry import correlation_id

log = structlog.get_logger()

STATUS: dict[type[errors.IronstarError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.RequestTimeout: 408,
    errors.RuleViolation: 409,
    errors.Conflict: 409,
    errors.CommandIdReused: 409,
    errors.Undecidable: 500,  # not 503: retrying cannot help (docs/architecture.md)
    errors.Internal: 500,  # a bug behind the gateway (the app's code): no retry helps
    errors.StaleVersion: 412,
    errors.TooLarge: 413,
    errors.UriTooLong: 414,
    errors.HeaderTooLarge: 431,
    errors.Invalid: 422,
    errors.TooManyRequests: 429,
    errors.Unavailable: 503,
    errors.StorageFull: 503,
    errors.Timeout: 504,
}


def error_response(exc: errors.IronstarError) -> Response[dict[str, Any]]:
    """The HTTP answer for an Ironstar error: the status from `STATUS` (500 for a class not in it),
    body `{"error": code, "message", **detail}`, `Retry-After` when the error carries `retry_after`
    (seconds), and the `WWW-Authenticate` challenge on a 401 (RFC 6750)."""
    status = STATUS.get(type(exc), 500)
    headers = {}
    if "retry_after" in exc.detail:
        headers["Retry-After"] = str(exc.detail["retry_after"])
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ironstar"'
    body = {"error": exc.code, "message": exc.message, **exc.detail}
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)


def _ironstar(request: Request[Any, Any, Any], exc: errors.IronstarError) -> Response[Any]:
    if type(exc) not in STATUS:
        return _unexpected(request, exc)
    return error_response(exc)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A 500 for a bug: logged with its traceback, answered without internals."""
    cid = correlation_id()
    log.error(
        "unhandled_exception",
        method=request.method,
        path=request.url.path[:200],
        error=type(exc).__name__,
        exc_info=exc,
    )
    body = {
        "error": "internal",
        "message": f"the gateway failed on this request; it is logged under correlation id {cid}",
        "correlation_id": cid,
    }
    return Response(body, status_code=500, media_type=MediaType.JSON)


def _validation(_request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's own parameter validation: a 422 that names each parameter."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    fields = [p.get("key") for p in problems if isinstance(p, dict) and p.get("key")]
    message = "; ".join(
        f"{p.get('key')}: {p.get('message')}" for p in problems if isinstance(p, dict)
    )
    return error_response(errors.Invalid(message or str(exc.detail), fields=fields))


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 500:
        return _unexpected(request, exc)
    error_class = {400: errors.BadRequest, 404: errors.NotFound, 413: errors.TooLarge}.get(
        exc.status_code
    )
    if error_class is not None:
        return error_response(error_class(str(exc.detail)))
    return Response(
        {"error": "http", "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


HANDLERS: ExceptionHandlersMap = {
    errors.IronstarError: _ironstar,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
