"""The `datastar` feed format: events rendered server-side as Datastar 1.0 SSE events.

`render` turns one stored event into the `datastar-patch-elements` /
`datastar-patch-signals` messages the dashboard applies; the feed calls it for clients that
ask for `format=datastar` (or send `Datastar-Request`). Owned by the dashboard.
"""

from __future__ import annotations

import html

from common.envelope import Envelope
from gateway.wire import frame


def render(sequence: int, event: Envelope) -> bytes:
    """One Datastar message for `event`; `id:` is its stream sequence."""
    text = html.escape(
        f"#{sequence} {event.event_type} {event.aggregate_type}:{event.aggregate_id}"
    )
    elements = f'<li id="event-{sequence}">{text}</li>'
    lines = "selector #events\nmode prepend\nelements " + elements
    return frame(lines, event="datastar-patch-elements", id=sequence)
