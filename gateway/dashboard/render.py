"""The dashboard's generic HTML fragments (pure); the app's panels render their own."""

from __future__ import annotations

from common.html import e

__all__ = ["e", "event_line", "skipped_line"]


def event_line(sequence: int, event_type: str, aggregate_type: str, aggregate_id: str) -> str:
    return (
        f'<li id="ev-{sequence}"><code>#{sequence}</code> {e(event_type)} '
        f"<small>{e(aggregate_type)}:{e(aggregate_id)}</small></li>"
    )


def skipped_line(sequence: int, reason: str) -> str:
    """The event log's line for an event the feed skipped (it could not be decoded)."""
    code = f"<code>#{sequence}</code>"
    return f'<li id="ev-{sequence}" class="skipped">{code} skipped: {e(reason)}</li>'
