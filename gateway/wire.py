"""Server-Sent Events framing (pure): what goes on the wire, byte for byte."""

from __future__ import annotations


def frame(data: str | bytes, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE message; multi-line data becomes several `data:` lines."""
    raw = data.encode() if isinstance(data, str) else data
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id is not None:
        head += b"id: %d\n" % id
    if b"\n" not in raw and b"\r" not in raw:  # the common case: compact JSON
        return head + b"data: " + raw + b"\n\n"
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def comment(text: str) -> bytes:
    """A comment line: ignored by clients, keeps proxies and idle timers from closing us."""
    return f": {text}\n\n".encode()


def retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()
