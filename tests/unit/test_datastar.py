"""The `datastar` feed format and the dashboard's fragments, byte for byte where it matters."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datastar_py import ServerSentEventGenerator as Official

from common import catalogue
from common.catalogue import Catalogue
from common.envelope import Envelope, new_envelope
from examples.todo import panels
from gateway.dashboard import chart, datastar
from gateway.feed import snapshot
from gateway.feed.topics import Topic
from gateway.feed.wire import fields
from ironstar.scaffold import write_app


def _event(aggregate_type: str, aggregate_id: str, event_type: str, **payload: Any) -> Envelope:
    return new_envelope(
        aggregate_type,
        aggregate_id,
        1,
        event_type,
        payload,
        occurred_at="2026-01-01T12:00:00Z",
        event_id="e",
        command_id="c",
    )


def _messages(raw: bytes) -> list[dict[str, Any]]:
    """Parse SSE messages: event, id and the data lines of each."""
    out = []
    for block in raw.decode().strip().split("\n\n"):
        message: dict[str, Any] = {"data": []}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            if key == "data":
                message["data"].append(value)
            else:
                message[key] = value
        out.append(message)
    return out


def test_an_added_todo_is_appended_to_its_list_then_logged_and_only_the_last_message_has_the_id():
    raw = datastar.render(
        7, _event("todo_list", "groceries", "todo_added", todo_id="milk", text="Milk")
    )
    first, log, signals = _messages(raw)
    assert first["event"] == "datastar-patch-elements"
    assert first["data"][:2] == ["mode append", "selector #todos-groceries"]
    assert first["data"][2].startswith('elements <li id="todo-milk" class="todo"')
    assert log["data"][:2] == ["mode prepend", "selector #events"]
    assert signals == {"event": "datastar-patch-signals", "id": "7", "data": ['signals {"seq":7}']}
    assert "id" not in first and "id" not in log


def test_user_text_is_escaped_and_a_newline_in_it_becomes_another_elements_line():
    raw = datastar.render(
        3, _event("todo_list", "l", "todo_renamed", todo_id="t", text="<script>x</script>\nnext")
    )
    patch = _messages(raw)[0]
    assert patch["data"][0] == "selector #todos-l #todo-t .text"
    assert (
        patch["data"][1] == 'elements <span class="text" id="text-t">&lt;script&gt;x&lt;/script&gt;'
    )
    assert patch["data"][2] == "elements next</span>"
    assert "<script>" not in raw.decode()


def test_a_deleted_todo_is_removed_by_selector_without_elements():
    raw = datastar.render(9, _event("todo_list", "l", "todo_deleted", todo_id="t"))
    assert _messages(raw)[0]["data"] == ["mode remove", "selector #todos-l #todo-t"]


def test_completing_and_reopening_replace_only_the_checkbox():
    done = _messages(datastar.render(4, _event("todo_list", "l", "todo_completed", todo_id="t")))
    again = _messages(datastar.render(5, _event("todo_list", "l", "todo_reopened", todo_id="t")))
    assert done[0]["data"][0] == "selector #todos-l #todo-t .toggle"
    assert " checked>" in done[0]["data"][1]
    assert " checked" not in again[0]["data"][1]


def test_a_profile_update_patches_only_the_fields_it_carries():
    raw = datastar.render(5, _event("user_profile", "ada", "profile_updated", name="Ada L."))
    patches = [m for m in _messages(raw) if m["event"] == "datastar-patch-elements"]
    assert patches[0]["data"] == [
        "selector #user-ada .name",
        'elements <span class="name">Ada L.</span>',
    ]
    assert len(patches) == 2  # the name, then the event log line


def test_a_snapshot_replaces_whole_fragments_and_raises_the_snapshot_signal():
    state = {
        "todo_list:l": {"items": [{"todo_id": "a", "text": "A", "completed": True}]},
        "user_profile": [{"user_id": "u", "name": "U", "email": "u@x.org", "active": True}],
    }
    todos, users, signals = _messages(datastar.render_snapshot(12, state))
    assert todos["data"][:2] == ["mode inner", "selector #todos-l"]
    assert users["data"][:2] == ["mode inner", "selector #users"]
    assert signals["id"] == "12"
    assert signals["data"] == ['signals {"seq":12,"snapshot":12}']


def test_a_snapshot_of_a_list_cut_to_fit_one_answer_says_how_many_it_shows():
    items = [{"todo_id": f"t{n}", "text": "x", "completed": False} for n in range(3)]
    cut = {"field": "items", "returned": 3_841, "total": 4_600}
    (todos, _signals) = _messages(
        datastar.render_snapshot(5, {"todo_list:big": {"items": items, "truncated": cut}})
    )
    text = " ".join(todos["data"])
    assert "showing 3,841 of 4,600 todos — the rest is too large for one answer" in text
    assert text.index("showing 3,841") < text.index('id="todo-t0"')  # first, above the todos
    (whole, _signals) = _messages(datastar.render_snapshot(5, {"todo_list:big": {"items": items}}))
    assert "showing" not in " ".join(whole["data"])


def test_every_todo_list_rendering_notes_a_cut_and_only_a_cut() -> None:
    items = [{"todo_id": "a", "text": "A", "completed": False}]
    cut = {"field": "items", "returned": 1, "total": 2}
    for html in (
        panels.todo_list("l", {"items": items, "truncated": cut}),
        panels.todo_items(items, cut),
    ):
        assert '<li class="note truncated" role="note">showing 1 of 2 todos' in html
    for html in (panels.todo_list("l", {"items": items}), panels.todo_items(items, None)):
        assert "showing" not in html and "note" not in html


def test_the_chart_stacks_each_minute_by_event_type_and_says_its_numbers_in_text():
    rows = [
        {"minute": "2026-01-01T12:00:00+00:00", "event_type": "todo_added", "events": 3},
        {"minute": "2026-01-01T12:00:00+00:00", "event_type": "todo_completed", "events": 1},
        {"minute": "2026-01-01T12:02:00+00:00", "event_type": "todo_added", "events": 2},
    ]
    svg = chart.chart(rows, minutes=5, now=datetime(2026, 1, 1, 12, 2, 40, tzinfo=UTC))
    assert svg.count("<rect") == 3
    assert "6 events in the 5 minutes up to 12:02 UTC; busiest minute 4." in svg
    assert f'fill="{chart.colour("todo_added")}"' in svg  # todo_added's own colour


def test_the_chart_time_axis_runs_to_now_not_to_the_last_event():
    rows = [{"minute": "2026-01-01T12:00:00+00:00", "event_type": "todo_added", "events": 3}]
    svg = chart.chart(rows, minutes=15, now=datetime(2026, 1, 1, 12, 20, 5, tzinfo=UTC))
    assert "12:20 UTC</text>" in svg and "12:06</text>" in svg
    assert svg.count("<rect") == 0  # 12:00 lies before the window: nothing happened since
    naive = [{"minute": datetime(2026, 1, 1, 12, 19), "event_type": "todo_added", "events": 1}]
    assert "12:20 UTC" in chart.chart(naive, now=datetime(2026, 1, 1, 12, 20, tzinfo=UTC))


def test_a_registered_user_is_put_at_the_top_of_the_newest_first_list():
    event = _event("user_profile", "linus", "user_registered", name="Linus Torvalds",
                   email="linus@example.org")  # fmt: skip
    first = dict(datastar.patches(9, event)[0][0])
    assert (first["mode"], first["selector"]) == ("prepend", "#users")


def test_the_chart_without_events_says_how_to_make_some():
    assert "ironstar demo" in chart.chart([])


def test_how_far_the_client_trails_rides_along_as_the_behind_signal():
    raw = datastar.render(8, _event("todo_list", "l", "todo_deleted", todo_id="t"), behind=41)
    assert _messages(raw)[-1]["data"] == ['signals {"seq":8,"behind":41}']


def test_the_wire_format_is_byte_for_byte_what_the_official_python_sdk_writes():
    item = '<li id="a">two\nlines</li>'
    ours = [
        fields(datastar.patch_elements(item, "#l", "append"), event="datastar-patch-elements"),
        fields(datastar.patch_elements(item), event="datastar-patch-elements"),
        fields(
            datastar.patch_elements(selector="#l #a", mode="remove"),
            event="datastar-patch-elements",
        ),
        fields(datastar.patch_signals({"seq": 3}), event="datastar-patch-signals", id=3),
    ]
    official = [
        Official.patch_elements(item, selector="#l", mode="append"),
        Official.patch_elements(item),
        Official.remove_elements("#l #a"),
        Official.patch_signals({"seq": 3}, event_id="3"),
    ]
    assert [o.decode() for o in ours] == [str(o) for o in official]


async def test_a_whole_type_without_every_is_snapshotted_as_unavailable_never_null(
    tmp_path: Path,
) -> None:
    write_app(tmp_path, "ledger_snap")
    sys.path.insert(0, str(tmp_path))
    app = catalogue.load("ledger_snap").app
    feeds = (replace(app.feeds[0], every=""),)
    previous = catalogue.current()
    catalogue.install(Catalogue(replace(app, feeds=feeds)))
    try:
        # no query is asked for such a topic: nothing reaches the backend
        seq, state = await snapshot.take(None, (Topic("ledger_snap"),), 7)  # type: ignore[arg-type]
        assert seq == 7
        note = state["ledger_snap"]["unavailable"]
        assert "offers no snapshot of every ledger_snap" in note and "ledger_snap:<id>" in note
        # the Datastar form: no panel is handed the note; the page reloads the panels
        (signals,) = _messages(datastar.render_snapshot(seq, state))
        assert signals["data"] == ['signals {"seq":7,"snapshot":7}']
    finally:
        catalogue.install(previous)
