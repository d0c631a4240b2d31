"""What a feed shows of a delivery (pure): an event, or `skipped` with its reason."""

from __future__ import annotations

import pytest

from gateway.feed import reading
from tests.support.feeds import make


@pytest.mark.parametrize(
    "subject, body, reason",
    [
        ("p.events.todo_list.l", b"", "not an event envelope"),
        ("p.events.todo_list.l", b"[1, 2]", "not an event envelope"),
        ("p.events.todo_list.l", make("todo_list", "m", 1, "todo_added", {}), "on the subject"),
        ("p.events.todo_list.l", make("todo_list", "l", 0, "todo_added", {}), "$.version"),
        ("p.events.todo_list.l", make("todo_list", "l", 1, "todo\radded", {}), "snake_case"),
        ("p.events.todo_list.l", make("todo_list", "l", 1, "Todo-Added", {}), "snake_case"),
        ("p.events.todo_list.l", make("todo_list", "l", 1, "connected", {}), "unknown to this"),
        ("p.events.todo_list.l", make("todo_list", "l", 1, "skipped", {}), "unknown to this"),
        ("p.events.todo_list.x,body", make("todo_list", "x,body", 1, "t", {}), "subject tokens"),
        ("p.events.todo_list.a.b", make("todo_list", "a.b", 1, "t", {}), "on the subject"),
    ],
)
def test_a_delivery_that_is_not_an_event_of_its_subject_is_skipped_with_its_reason(
    subject: str, body: bytes, reason: str
) -> None:
    item = reading.item(7, subject, body)
    assert (item.seq, item.event_type, item.event) == (7, "skipped", None)
    assert reason in item.skipped
    assert reading.subject_of(item) == subject
    assert item.key != subject  # never merged with an event of the aggregate by a window


@pytest.mark.parametrize(
    "event_type, schema, payload, reason",
    [
        ("todo_archived", 1, {"todo_id": "a"}, "unknown to this version"),
        ("todo_added", 99, {"todo_id": "a", "text": "x"}, "schema 99"),
        ("todo_added", 2, {"todo_id": 'b"><img src=x onerror=alert(1)>', "text": "x"}, "todo_id"),
        ("todo_added", 2, {"todo_id": "a"}, "text"),
        ("todo_renamed", 1, {"todo_id": "a", "text": ""}, "text"),
    ],
)
def test_an_event_this_gateway_cannot_read_the_way_its_writer_would_is_skipped(
    event_type: str, schema: int, payload: dict[str, object], reason: str
) -> None:
    body = make("todo_list", "l", 3, event_type, payload, schema=schema)
    item = reading.item(9, "p.events.todo_list.l", body)
    assert (item.event_type, item.event) == ("skipped", None)
    assert reason in item.skipped
