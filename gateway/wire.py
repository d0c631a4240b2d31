"""Server-Sent Events framing (pure): what goes on the wire, byte for byte."""

from __future__ import annotations


def frame(data: str | bytes, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE message; multi-line data becomes several `data:` lines."""
    text = data.decode() if isinstance(data, bytes) else data
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    """A comment line: ignored by clients, keeps proxies and idle timers from closing us."""
    return f": {text}\n\n".encode()


def retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()
