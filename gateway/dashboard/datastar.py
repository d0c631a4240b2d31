"""The `datastar` feed format: events rendered server-side as Datastar 1.0 SSE events.

`render` turns one stored event into the `datastar-patch-elements` /
`datastar-patch-signals` messages the dashboard applies; the feed calls it for clients that
ask for `format=datastar`. One event becomes a few messages (the changed fragment, a line
in the event log, the `seq` signal; the app's panels give the fragments, and an event no
panel renders goes out as the `event` signal); only the last carries `id:`, so a client that drops
mid-way resumes before the event and gets all of it again. `render_snapshot` renders the
feed's full-state snapshot the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from common import catalogue
from common.app import Patch
from common.envelope import Envelope
from gateway.dashboard import render as html
from gateway.feed import snapshot
from gateway.feed.wire import fields

MODES = ("outer", "inner", "replace", "prepend", "append", "before", "after", "remove")
Fields = list[tuple[str, str]]  # the `key value` data fields of one Datastar event


def patch_elements(elements: str = "", selector: str | None = None, mode: str = "outer") -> Fields:
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


def patch_signals(signals: Mapping[str, Any]) -> Fields:
    """The fields of a `datastar-patch-signals` event: `signals` as compact JSON (values JSON cannot
    hold, e.g. datetimes, as their `str`)."""
    return [("signals", json.dumps(signals, separators=(",", ":"), default=str))]


def _messages(patches: Iterable[Fields], signals: Mapping[str, Any], sequence: int | None) -> bytes:
    out = [fields(p, event="datastar-patch-elements") for p in patches]
    out.append(fields(patch_signals(signals), event="datastar-patch-signals", id=sequence))
    return b"".join(out)


def _patch(patch: Patch) -> Fields:
    return patch_elements(patch.elements, patch.selector, patch.mode)


def patches(sequence: int, event: Envelope) -> tuple[list[Fields], bool]:
    """The element patches of one event: the app's panels' own, then its line in the event
    log; and whether any panel rendered it (if none did, the event goes out as a signal)."""
    changed = [
        _patch(patch)
        for panel in catalogue.current().app.panels
        if panel.patches is not None
        for patch in panel.patches(sequence, event)
    ]
    line = html.event_line(sequence, event.event_type, event.aggregate_type, event.aggregate_id)
    return [*changed, patch_elements(line, "#events", "prepend")], bool(changed)


def render(sequence: int, event: Envelope, behind: int | None = None) -> bytes:
    """The Datastar messages of `event`; the last one's `id:` is its stream sequence.

    `behind` (the client's consumer's pending count when the event was delivered) becomes
    the `behind` signal, so the page can say how far it trails.
    """
    elements, rendered = patches(sequence, event)
    signals: dict[str, Any] = {"seq": sequence}
    if behind is not None:
        signals["behind"] = behind
    if not rendered:  # no panel knows this event: its fields, for any page that binds them
        signals["event"] = {
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            "event_type": event.event_type,
            "payload": event.payload,
        }
    return _messages(elements, signals, sequence)


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
    out = [
        _patch(patch)
        for topic, value in state.items()
        if snapshot.offered(topic)  # a panel's snapshot gets read-model states only
        for panel in catalogue.current().app.panels
        if panel.snapshot is not None
        for patch in panel.snapshot(topic, value)
    ]
    return _messages(out, {"seq": sequence, "snapshot": sequence}, sequence)
