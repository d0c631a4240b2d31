"""The dashboard's generic HTML fragments (pure); the app's panels render their own."""

from __future__ import annotations

from html import escape


def e(value: object) -> str:
    """Escape text and attribute values (quotes included)."""
    return escape(str(value), quote=True)


def event_line(sequence: int, event_type: str, aggregate_type: str, aggregate_id: str) -> str:
    return (
        f'<li id="ev-{sequence}"><code>#{sequence}</code> {e(event_type)} '
        f"<small>{e(aggregate_type)}:{e(aggregate_id)}</small></li>"
    )
