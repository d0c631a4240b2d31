"""Server-Sent Events framing (pure): what goes on the wire, byte for byte.

The one place that writes SSE syntax, so no caller can produce a broken frame. The rules
come from the WHATWG HTML standard, "Server-sent events", §9.2.6 (interpreting an event
stream): a line ends at CR LF, a lone LF or a lone CR, and a line without a field name
is a field of its own. Hence:

- `data` is split on every CR LF, CR and LF, each piece its own `data:` line; a parser
  joins them again with LF (so a CR or CR LF inside data arrives as LF — the one change
  the SSE format itself imposes).
- `fields` (Datastar's `key value` lines) carry their key on every continuation line:
  `elements` and `signals` may span lines (Datastar joins them with LF); any other key
  must be one line, or `ValueError`.
- `event` is a token (`EVENT_TOKEN`), `id` a non-negative integer, `retry` a
  non-negative integer: none of them can hold a line break or a NUL. Anything else is a
  `ValueError`, raised before a byte is written.
- A comment's text is split like data, each line its own comment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

EVENT_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_BREAKS = re.compile(rb"\r\n|\r|\n")
_MULTILINE_KEYS = frozenset({"elements", "signals"})


def lines(text: str | bytes) -> list[bytes]:
    """`text` split where an SSE parser would end a line (CR LF, CR, LF)."""
    raw = text.encode() if isinstance(text, str) else text
    if b"\n" not in raw and b"\r" not in raw:
        return [raw]
    return _BREAKS.split(raw)


@functools.lru_cache(maxsize=1024)  # a few names, written per event: check each once
def _event_line(event: str) -> bytes:
    if not EVENT_TOKEN.fullmatch(event):
        raise ValueError(f"an SSE event type must match {EVENT_TOKEN.pattern}: {event[:200]!r}")
    return b"event: " + event.encode() + b"\n"


def _head(event: str | None, id: int | None) -> bytes:
    head = b"" if event is None else _event_line(event)
    if id is None:
        return head
    if id < 0:
        raise ValueError(f"an SSE id must be a non-negative integer: {id}")
    return b"%bid: %d\n" % (head, id)


def frame(data: str | bytes, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE message; data with line breaks becomes several `data:` lines.

    Raises ValueError for an `event` that is not a token or a negative `id`.
    """
    raw = data.encode() if isinstance(data, str) else data
    if b"\n" not in raw and b"\r" not in raw:  # the common case: compact JSON
        if event is not None and id is not None and id >= 0:  # an event: one format step
            return b"%bid: %d\ndata: %b\n\n" % (_event_line(event), id, raw)
        return _head(event, id) + b"data: " + raw + b"\n\n"
    return _head(event, id) + b"".join(b"data: " + line + b"\n" for line in lines(raw)) + b"\n"


def fields(
    pairs: Sequence[tuple[str, str]], event: str | None = None, id: int | None = None
) -> bytes:
    """One SSE message whose data lines are `key value` fields (the Datastar 1.0 wire form).

    A value with line breaks becomes one `data: key ...` line per line, for the keys
    that may span lines (`elements`, `signals`); a line break in any other key's value, or
    a key that is not a lowercase word, is a ValueError. (Datastar SSE spec: "multi-line
    elements are sent as several `data: elements` lines".)
    """
    out = [_head(event, id)]
    for key, value in pairs:
        if not key.isascii() or not key.isalpha():
            raise ValueError(f"a Datastar field key must be a word: {key!r}")
        parts = lines(value)
        if len(parts) > 1 and key not in _MULTILINE_KEYS:
            raise ValueError(f"Datastar field {key!r} must be one line: {value[:80]!r}")
        prefix = b"data: " + key.encode() + b" "
        out.extend(prefix + part + b"\n" for part in parts)
    out.append(b"\n")
    return b"".join(out)


def comment(text: str) -> bytes:
    """A comment: ignored by clients, keeps proxies and idle timers from closing us."""
    return b"".join(b": " + line + b"\n" for line in lines(text)) + b"\n"


def retry(ms: int) -> bytes:
    """The reconnection delay hint, in milliseconds (ValueError when negative)."""
    if ms < 0:
        raise ValueError(f"retry must be a non-negative integer of ms: {ms}")
    return b"retry: %d\n\n" % ms
