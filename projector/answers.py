"""Every reply a replica sends fits in one NATS message, and says when it was cut.

A reply travels as one NATS message, whose size the server caps (`max_payload`, 1 MiB by
default); a bigger one could never be delivered, so retrying it would never help. An
answer over `max_bytes` keeps the first items of its longest list that fit (the answer
itself when it is a list, else its largest list-valued field, e.g. a todo list's `items`)
and the reply says so: `"truncated": {"field", "returned", "total", "max_bytes"}`. An
answer with no list to cut is a 413 naming the limit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from common.errors import TooLarge

_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
HEADROOM_BYTES = 4096  # bytes of a NATS message kept for headers and the reply around the answer


def budget(max_payload: int, configured_bytes: int) -> int:
    """Bytes an answer may take: `configured_bytes` (`max_answer_bytes`), within the NATS
    server's `max_payload` (bytes) less `HEADROOM_BYTES`, and at least 1,024."""
    return max(1024, min(configured_bytes, max_payload - HEADROOM_BYTES))


def reply(sequence: int, result: Any, max_bytes: int, extra: dict[str, Any] | None = None) -> bytes:
    """`{"sequence", "result", **extra}` as JSON of at most `max_bytes`, cut and marked if
    need be (`extra` is small: flags such as `storage_exhausted`); `TooLarge` (413) when
    it is over and has no list to cut."""
    body = _json.encode({"sequence": sequence, "result": result, **(extra or {})})
    if len(body) <= max_bytes:
        return body
    room = max_bytes - (len(body) - len(_json.encode(result))) - 256
    result, truncated = _cut(result, room)
    truncated["max_bytes"] = max_bytes
    return _json.encode(
        {"sequence": sequence, "result": result, "truncated": truncated, **(extra or {})}
    )


class _Longest(NamedTuple):
    """The list an answer is cut in: the answer itself (`field` None) or its field."""

    field: str | None
    items: list[Any] | None


def _cut(result: Any, room: int) -> tuple[Any, dict[str, Any]]:
    """`result` shortened to `room` bytes, and its `truncated` mark without `max_bytes`."""
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


def _longest_list(result: Any) -> _Longest:
    if isinstance(result, list):
        return _Longest(None, result)
    if isinstance(result, dict):
        lists = [(len(_json.encode(v)), k) for k, v in result.items() if isinstance(v, list)]
        if lists:
            field = max(lists)[1]
            return _Longest(field, result[field])
    return _Longest(None, None)
