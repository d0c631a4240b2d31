"""Every reply a replica sends fits in one NATS message, and says when it was cut.

A reply travels as one NATS message, whose size the server caps (`max_payload`, 1 MiB by
default); a bigger one could never be delivered, so retrying it would never help. An
answer over `max_bytes` keeps the first items of its longest list that fit (the answer
itself when it is a list, else its largest list-valued field, e.g. a todo list's `items`)
and the reply says so: `"truncated": {"field", "returned", "total", "max_bytes"}`. An
answer with no list to cut is a 413 naming the limit.
"""

from __future__ import annotations

from typing import Any

import msgspec

from common.errors import TooLarge

_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
HEADROOM = 4096  # bytes of a NATS message kept for headers and the reply around the answer


def budget(max_payload: int, configured: int) -> int:
    """Bytes an answer may take: the configured limit, within the server's max payload."""
    return max(1024, min(configured, max_payload - HEADROOM))


def reply(sequence: int, result: Any, max_bytes: int, extra: dict[str, Any] | None = None) -> bytes:
    """`{"sequence", "result", **extra}` as JSON of at most `max_bytes`, cut and marked if
    need be (`extra` is small: flags such as `storage_exhausted`)."""
    body = _json.encode({"sequence": sequence, "result": result, **(extra or {})})
    if len(body) <= max_bytes:
        return body
    room = max_bytes - (len(body) - len(_json.encode(result))) - 256
    result, truncated = _cut(result, room)
    truncated["max_bytes"] = max_bytes
    return _json.encode(
        {"sequence": sequence, "result": result, "truncated": truncated, **(extra or {})}
    )


def _cut(result: Any, room: int) -> tuple[Any, dict[str, Any]]:
    field, items = _longest_list(result)
    if items is None:
        raise TooLarge(
            f"the answer is over the {room:,}-byte limit of an answer and has no list to shorten; "
            "ask for less (a narrower query or fewer columns)",
            limit="bytes",
        )
    rest = len(_json.encode(result)) - len(_json.encode(items))
    kept, used = 0, rest
    for item in items:
        used += len(_json.encode(item)) + 1
        if used > room:
            break
        kept += 1
    cut = items[:kept]
    shortened = cut if field is None else {**result, field: cut}
    return shortened, {"field": field, "returned": kept, "total": len(items)}


def _longest_list(result: Any) -> tuple[str | None, list[Any] | None]:
    if isinstance(result, list):
        return None, result
    if isinstance(result, dict):
        lists = [(len(_json.encode(v)), k) for k, v in result.items() if isinstance(v, list)]
        if lists:
            field = max(lists)[1]
            return field, result[field]
    return None, None
