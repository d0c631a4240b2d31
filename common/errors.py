"""The one error tree of Ironstar.

    IronstarError                 every error a client or operator may see
    ├── BadRequest        400     malformed JSON, bad query parameters
    ├── Unauthorized      401     no bearer token, or one that is expired or wrongly signed
    ├── Forbidden         403     the token does not grant this command, topic or query
    ├── NotFound          404     unknown aggregate type, command or projection
    ├── RequestTimeout    408     the request body arrived too slowly
    ├── RuleViolation     409     a well-formed command broke a domain rule
    ├── Conflict          409     concurrent writers kept winning; retry the command
    ├── CommandIdReused   409     a command_id already used on the aggregate, for another command
    ├── StaleVersion      412     the client's If-Match sequence is not the aggregate's
    ├── TooLarge          413     body or payload over its limit
    ├── UriTooLong        414     the request's path and query over their limit
    ├── HeaderTooLarge    431     a request header (or all of them) over its limit
    ├── Invalid           422     an id, payload field or parameter of the wrong shape
    ├── TooManyRequests   429     a per-client limit was reached
    ├── Undecidable       500     the aggregate's history holds an event this writer cannot
    │                             read (undecodable, or a type/schema it does not know): no
    │                             retry helps until an operator acts; names the sequence
    ├── Internal          500     a service failed on the request (a bug: e.g. the app's
    │                             `decide` or a query raising); logged there with its
    │                             traceback, the message names only the correlation id
    ├── Unavailable       503     NATS, the writer or a projector cannot be reached
    │   └── StorageFull   503     a disk is full: the event store or a read model cannot write
    └── Timeout           504     a read model did not reach `min_seq` in time

Errors cross process boundaries as `ErrorReply(code, message, detail)`; `from_reply`
rebuilds the same class on the other side. The gateway maps classes to HTTP status codes
in one table (`gateway/api/errors.py`). Every message says what was wrong and what to do.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

import msgspec


class IronstarError(Exception):
    code: ClassVar[str] = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, detail=self.detail)


class BadRequest(IronstarError):
    code = "bad_request"


class NotFound(IronstarError):
    code = "not_found"


class Unauthorized(IronstarError):
    code = "unauthorized"


class Forbidden(IronstarError):
    code = "forbidden"


class RequestTimeout(IronstarError):
    code = "request_timeout"


class RuleViolation(IronstarError):
    code = "rule_violation"


class Conflict(IronstarError):
    code = "conflict"


class CommandIdReused(IronstarError):
    code = "command_id_reused"


class Undecidable(IronstarError):
    code = "undecidable"


class Internal(IronstarError):
    code = "internal"


class StaleVersion(IronstarError):
    code = "stale_version"


class TooLarge(IronstarError):
    code = "too_large"


class UriTooLong(IronstarError):
    code = "uri_too_long"


class HeaderTooLarge(IronstarError):
    code = "header_too_large"


class Invalid(IronstarError):
    code = "invalid"


class TooManyRequests(IronstarError):
    code = "too_many_requests"


class Unavailable(IronstarError):
    code = "unavailable"


class StorageFull(Unavailable):
    """Storage is exhausted; reads go on, writes wait until space returns (with Retry-After)."""

    code = "storage_full"


class Timeout(IronstarError):
    code = "timeout"


_NO_SPACE = (
    "no space left on device",
    "disk quota exceeded",
    "insufficient resources",  # JetStream 10047: its storage limit or the disk is exhausted
    "insufficient storage",
)


def storage_exhausted(exc: BaseException) -> bool:
    """`exc` says a disk or a storage limit is full (ENOSPC, EDQUOT, JetStream 10047/10023)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(words in text for words in _NO_SPACE)


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    """An error as it travels over NATS and HTTP."""

    code: str
    message: str
    detail: dict[str, Any] = {}


_BY_CODE: dict[str, type[IronstarError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        NotFound,
        Unauthorized,
        Forbidden,
        RequestTimeout,
        RuleViolation,
        Conflict,
        CommandIdReused,
        Undecidable,
        Internal,
        StaleVersion,
        TooLarge,
        UriTooLong,
        HeaderTooLarge,
        Invalid,
        TooManyRequests,
        Unavailable,
        StorageFull,
        Timeout,
    )
}


def from_reply(reply: ErrorReply) -> IronstarError:
    cls = _BY_CODE.get(reply.code, Unavailable)
    return cls(reply.message, **reply.detail)


def invalid_from_msgspec(exc: msgspec.ValidationError, what: str) -> Invalid:
    """Turn msgspec's "Expected `str`, got `int` - at `$.text`" into a 422 naming the field."""
    text = str(exc)
    field = text.rsplit("- at `", 1)[1].rstrip("`") if "- at `" in text else "$"
    if " field `" in text:  # "Object missing required field `text`" / "... unknown field `x`"
        name = text.split(" field `", 1)[1].split("`", 1)[0]
        field = f"{field}.{name}"
    field = field.removeprefix("$.").removeprefix("$") or "(body)"
    return Invalid(f"invalid {what}: {text}", field=field)
