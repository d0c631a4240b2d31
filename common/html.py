"""HTML escaping for server-rendered fragments (the gateway's and the apps' panels)."""

from __future__ import annotations

from html import escape


def escape_html(value: object) -> str:
    """`str(value)` safe as HTML text or a quoted attribute value: `& < > " '` become
    character references (the stdlib's `html.escape(quote=True)`), and so does a CR
    (`&#13;`): the HTML parser would turn a raw one into LF, and the SSE framing would end
    a line there (the DOM keeps the reference's CR)."""
    return escape(str(value), quote=True).replace("\r", "&#13;")


e = escape_html  # the old name, still imported by the gateway's render module
