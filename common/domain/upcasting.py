"""Upcasters: bring stored payloads of an older `schema` up to the current one.

Stored events are never rewritten; an event read with schema N is passed through the
upcasters N → N+1 → … until it reaches the version its aggregate declares current.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


def _todo_added_v1_to_v2(payload: Payload) -> Payload:
    # v1 called the todo's text `title`.
    upcast = {key: value for key, value in payload.items() if key != "title"}
    upcast["text"] = payload["title"]
    return upcast


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("todo_added", 1): _todo_added_v1_to_v2,
}


def upcast(event_type: str, schema: int, current: int, payload: Payload) -> Payload:
    while schema < current:
        step = UPCASTERS.get((event_type, schema))
        if step is None:
            raise ValueError(f"no upcaster for {event_type} schema {schema} → {schema + 1}")
        payload, schema = step(payload), schema + 1
    return payload
