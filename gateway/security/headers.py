"""Bounds on the request headers the gateway reads, keeps or forwards (pure).

uvicorn's httptools parser puts no limit on header size, and some headers travel on:
`X-Correlation-Id` is stored in every event a command appends and in every log line of
the request, `Authorization` and the session cookie are parsed and verified. So every
request's headers are checked once, in the front door, before anything reads them:

| what | bound | past it |
|---|---|---|
| path + query string | `MAX_TARGET` = 8 KiB | 414 |
| any one header value | `MAX_VALUE` = 8 KiB | 431 naming the header |
| all header lines | `MAX_TOTAL` = 32 KiB, `MAX_COUNT` = 100 | 431 |
| `X-Correlation-Id` | empty, or 1-128 of `A-Z a-z 0-9 . _ : / + = @ -` | 400 (after auth) |
| `If-Match` | a stream sequence (api.py) | 422 naming the header |
| `Last-Event-ID` | digits (sse.py); anything else | a snapshot, never an error |

Error messages quote at most 40 characters of what was sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from common.errors import BadRequest, HeaderTooLarge, UriTooLong

MAX_TARGET = 8 * 1024
MAX_VALUE = 8 * 1024
MAX_TOTAL = 32 * 1024
MAX_COUNT = 100
CORRELATION_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def check_target(path: str, query: bytes) -> None:
    """414 for a path and query string over `MAX_TARGET` (they are parsed and logged)."""
    size = len(path.encode("utf-8", "replace")) + len(query)
    if size > MAX_TARGET:
        raise UriTooLong(
            f"the request's path and query are {size} bytes; at most {MAX_TARGET}",
            limit=MAX_TARGET,
        )


def bounded(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones). HeaderTooLarge
    (431, RFC 6585 §5) past `MAX_VALUE` bytes for one value or the total/count bounds."""
    found: dict[str, str] = {}
    total = 0
    for count, (key, value) in enumerate(raw, start=1):
        total += len(key) + len(value) + 4
        name = key.decode("latin-1").lower()
        if len(value) > MAX_VALUE:
            raise HeaderTooLarge(
                f"header {name[:40]!r} is {len(value)} bytes; at most {MAX_VALUE} per header",
                field=name[:40],
                limit=MAX_VALUE,
            )
        if count > MAX_COUNT or total > MAX_TOTAL:
            raise HeaderTooLarge(
                f"the request headers are over {MAX_COUNT} lines or {MAX_TOTAL} bytes; send fewer",
                limit=MAX_TOTAL,
            )
        found[name] = value.decode("latin-1")
    return found


def check_correlation(raw: Iterable[tuple[bytes, bytes]]) -> None:
    """400 unless every `X-Correlation-Id` is empty (the gateway makes one) or well formed.

    Checked after authentication, so a caller without a token learns nothing else first."""
    for key, value in raw:
        if key.lower() == b"x-correlation-id" and value:
            text = value.decode("latin-1")
            if not CORRELATION_ID.fullmatch(text):
                raise BadRequest(
                    f"X-Correlation-Id {text[:40]!r} is not 1 to 128 characters of letters, "
                    "digits and . _ : / + = @ -; send such an id, or none and the gateway "
                    "makes one",
                    field="X-Correlation-Id",
                )
