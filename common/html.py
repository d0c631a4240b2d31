"""HTML escaping for server-rendered fragments (the gateway's and the apps' panels)."""

from __future__ import annotations

import html


def escape(value: object) -> str:
    """Escape text and attribute values (quotes included).

    A CR becomes the character reference `&#13;`: the HTML parser would turn a raw one
    into LF, and the SSE framing would end a line there (the DOM keeps the reference's CR).
    """
    return html.escape(str(value), quote=True).replace("\r", "&#13;")
