"""The dashboard's generic HTML fragments (pure); the app's panels render their own."""

from __future__ import annotations

from common.html import escape

__all__ = ["escape", "event_line", "skipped_line"]


def event_line(sequence: int, event_type: str, aggregate_type: str, aggregate_id: str) -> str:
    """The event log's line for one event: `<li id="ev-<sequence>">` with its type and
    `<aggregate_type>:<aggregate_id>`, every value escaped."""
    return (
        f'<li id="ev-{sequence}"><code>#{sequence}</code> {escape(event_type)} '
        f"<small>{escape(aggregate_type)}:{escape(aggregate_id)}</small></li>"
    )


def skipped_line(sequence: int, reason: str) -> str:
    """The event log's line for an event the feed skipped (it could not be decoded)."""
    code = f"<code>#{sequence}</code>"
    return f'<li id="ev-{sequence}" class="skipped">{code} skipped: {escape(reason)}</li>'
