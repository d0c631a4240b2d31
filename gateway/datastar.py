"""The `datastar` feed format: events rendered server-side as Datastar 1.0 SSE events.

`render` turns one stored event into the `datastar-patch-elements` /
`datastar-patch-signals` messages the dashboard applies; the feed calls it for clients that
ask for `format=datastar`. One event becomes a few messages (the changed fragment, a line
in the event log, the `seq` signal); only the last carries `id:`, so a client that drops
mid-way resumes before the event and gets all of it again. `render_snapshot` renders the
feed's full-state snapshot the same way. Markup comes from `gateway.render`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from common.envelope import Envelope
from common.subjects import valid_id
from gateway import render as html
from gateway.wire import fields

MODES = ("outer", "inner", "replace", "prepend", "append", "before", "after", "remove")
Patch = list[tuple[str, str]]  # the `key value` data fields of one Datastar event


def patch_elements(elements: str = "", selector: str | None = None, mode: str = "outer") -> Patch:
    """The data fields of one `datastar-patch-elements` event (framed by `wire.fields`,
    which gives every line of multi-line `elements` its key)."""
    assert mode in MODES, mode
    pairs = []
    if mode != "outer":
        pairs.append(("mode", mode))
    if selector is not None:
        pairs.append(("selector", selector))
    if elements:
        pairs.append(("elements", elements))
    return pairs


def patch_signals(signals: Mapping[str, Any]) -> Patch:
    return [("signals", json.dumps(signals, separators=(",", ":"), default=str))]


def _messages(patches: Iterable[Patch], signals: Mapping[str, Any], sequence: int | None) -> bytes:
    out = [fields(p, event="datastar-patch-elements") for p in patches]
    out.append(fields(patch_signals(signals), event="datastar-patch-signals", id=sequence))
    return b"".join(out)


def _todo(event: Envelope) -> list[Patch]:
    if event.event_type not in _TODO_EVENTS:
        return []  # a type this gateway does not know (a rolling upgrade): the log line only
    scope = f"#todos-{event.aggregate_id}"
    todo = valid_id(event.payload.get("todo_id", ""), "todo_id")  # it becomes a selector
    item = f"{scope} #todo-{todo}"
    match event.event_type:
        case "todo_added":
            return [patch_elements(html.todo_item(todo, event.payload["text"]), scope, "append")]
        case "todo_renamed":
            return [patch_elements(html.todo_text(todo, event.payload["text"]), f"{item} .text")]
        case "todo_completed" | "todo_reopened":
            done = event.event_type == "todo_completed"
            return [patch_elements(html.todo_toggle(todo, done), f"{item} .toggle")]
    return [patch_elements(selector=item, mode="remove")]  # todo_deleted


_TODO_EVENTS = frozenset(
    {"todo_added", "todo_renamed", "todo_completed", "todo_reopened", "todo_deleted"}
)


def _user(event: Envelope) -> list[Patch]:
    user = f"#user-{event.aggregate_id}"
    match event.event_type:
        case "user_registered":
            row = {"user_id": event.aggregate_id, **event.payload}
            return [patch_elements(html.user_item(row), "#users", "prepend")]  # newest first
        case "profile_updated":
            return [
                patch_elements(html.user_field(field, value), f"{user} .{field}")
                for field, value in event.payload.items()
                if field in ("name", "email") and value
            ]
        case "user_deactivated":
            return [patch_elements(html.user_state(False), f"{user} .state")]
    return []


def patches(sequence: int, event: Envelope) -> list[Patch]:
    """The element patches of one event: its fragment, then its line in the event log."""
    kind = {"todo_list": _todo, "user_profile": _user}.get(event.aggregate_type)
    changed = kind(event) if kind else []
    line = html.event_line(sequence, event.event_type, event.aggregate_type, event.aggregate_id)
    return [*changed, patch_elements(line, "#events", "prepend")]


def render(sequence: int, event: Envelope, behind: int | None = None) -> bytes:
    """The Datastar messages of `event`; the last one's `id:` is its stream sequence.

    `behind` (the client's consumer's pending count when the event was delivered) becomes
    the `behind` signal, so the page can say how far it trails.
    """
    signals = {"seq": sequence} if behind is None else {"seq": sequence, "behind": behind}
    return _messages(patches(sequence, event), signals, sequence)


def render_skipped(sequence: int, reason: str) -> bytes:
    """An event the feed could not show: a line in the event log, and `seq` moves past it
    (its `id:`), so a client that resumes later does not meet it again."""
    line = html.skipped_line(sequence, reason)
    return _messages([patch_elements(line, "#events", "prepend")], {"seq": sequence}, sequence)


def render_snapshot(sequence: int, state: Any) -> bytes:
    """A feed snapshot (`{topic: read-model state}`) as whole fragments, `id:` = `sequence`.

    The `snapshot` signal tells the page to reload what the snapshot does not hold (the
    items of a list when the feed follows every list).
    """
    out: list[Patch] = []
    for topic, value in state.items():
        kind, _, ident = topic.partition(":")
        if value is None:
            continue
        if kind == "todo_list" and ident:
            out.append(
                patch_elements(
                    html.todo_items(value["items"], value.get("truncated")),
                    f"#todos-{ident}",
                    "inner",
                )
            )
        elif kind == "user_profile" and not ident:
            out.append(patch_elements(html.users(value), "#users", "inner"))
        elif kind == "user_profile":
            out.append(patch_elements(html.user_item(value)))
    return _messages(out, {"seq": sequence, "snapshot": sequence}, sequence)
