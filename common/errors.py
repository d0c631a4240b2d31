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
from typing import Any, ClassVar, TypeVar

import msgspec

T = TypeVar("T")


class IronstarError(Exception):
    """The root of the tree above: `message` says what was wrong and what to do; `detail` (JSON
    values) names the field, limit or scope involved. `code` names the class across processes."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_reply(self) -> ErrorReply:
        """This error as it travels over NATS and HTTP."""
        return ErrorReply(code=self.code, message=self.message, detail=self.detail)


class BadRequest(IronstarError):
    """400: malformed JSON or query parameters."""

    code = "bad_request"


class NotFound(IronstarError):
    """404: no such aggregate type, command type, projection or query (the message names the known
    ones)."""

    code = "not_found"


class Unauthorized(IronstarError):
    """401: no bearer token, or one expired, wrongly signed or malformed (`claim` names the bad
    claim)."""

    code = "unauthorized"


class Forbidden(IronstarError):
    """403: the token does not grant the scope (`scope`) this command, topic or read needs."""

    code = "forbidden"


class RequestTimeout(IronstarError):
    """408: the request body arrived too slowly."""

    code = "request_timeout"


class RuleViolation(IronstarError):
    """409: a well-formed command broke a domain rule (`decide` refused it); not retryable as is."""

    code = "rule_violation"


class Conflict(IronstarError):
    """409: concurrent writers kept winning the aggregate's optimistic-concurrency check; retry the
    command."""

    code = "conflict"


class CommandIdReused(IronstarError):
    """409: the command id was already used on the aggregate for another command (another
    fingerprint)."""

    code = "command_id_reused"


class Undecidable(IronstarError):
    """500: the aggregate's history holds an event this writer cannot read; names the sequence; no
    retry helps until an operator acts."""

    code = "undecidable"


class Internal(IronstarError):
    """500: a service failed on the request (a bug); logged there with its traceback, the message
    names only `correlation_id`."""

    code = "internal"


class StaleVersion(IronstarError):
    """412: the client's If-Match sequence is not the aggregate's current one."""

    code = "stale_version"


class TooLarge(IronstarError):
    """413: a body, payload or answer over its limit (`limit` names which)."""

    code = "too_large"


class UriTooLong(IronstarError):
    """414: the request's path and query over their limit."""

    code = "uri_too_long"


class HeaderTooLarge(IronstarError):
    """431: a request header, or all of them, over the limit."""

    code = "header_too_large"


class Invalid(IronstarError):
    """422: an id, payload field, parameter or setting of the wrong shape (`field` names it)."""

    code = "invalid"


class TooManyRequests(IronstarError):
    """429: a per-client or per-principal limit was reached (`retry_after` seconds when known)."""

    code = "too_many_requests"


class Unavailable(IronstarError):
    """503: NATS, the writer or a projector cannot be reached, or did not answer in time;
    `retry_after` (seconds) when a retry may succeed."""

    code = "unavailable"


class StorageFull(Unavailable):
    """Storage is exhausted; reads go on, writes wait until space returns (with Retry-After)."""

    code = "storage_full"


class Timeout(IronstarError):
    """504: a read model did not reach `min_seq` within the query's time limit."""

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
    """The error an `ErrorReply` describes, as its own class (an unknown code becomes Unavailable: a
    newer service's error is at worst worth a retry)."""
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


def decoded(decoder: msgspec.json.Decoder[T], data: bytes, what: str, hint: str = "") -> T:
    """`data` decoded by `decoder` (a JSON decoder of a typed message): `Invalid` (422)
    naming the field when the JSON has the wrong shape (`invalid_from_msgspec`),
    `BadRequest` (400) when `data` is not JSON at all; `what` names the message in both
    (e.g. "query request"), `hint` ends the 400's message (e.g. the shape to send)."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise invalid_from_msgspec(exc, what) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the {what} is not JSON: {exc}{hint}") from None
