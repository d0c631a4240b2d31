"""A raw HTTP/1.1 reader that checks chunked framing byte for byte (RFC 9112 §7.1), for the
writes made below the ASGI send chain (`gateway/feed/direct.py`)."""

from __future__ import annotations

import asyncio


async def head(reader: asyncio.StreamReader) -> bytes:
    """The response's status line and headers; asserts a 200 with chunked framing."""
    found = await reader.readuntil(b"\r\n\r\n")
    assert found.startswith(b"HTTP/1.1 200"), found[:200]
    assert b"transfer-encoding: chunked" in found.lower(), found
    return found


async def chunk(reader: asyncio.StreamReader) -> bytes:
    """The next chunk's data (b"" for the last chunk): `<lower-case hex size>CRLF`, exactly
    that many bytes, CRLF; anything else fails."""
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line[:-2], 16)
    assert size_line == b"%x\r\n" % size, size_line  # no extensions, no padding
    data = await reader.readexactly(size + 2)
    assert data[-2:] == b"\r\n", data[-20:]
    return data[:-2]


async def body(reader: asyncio.StreamReader) -> list[bytes]:
    """Every chunk up to the last one (exclusive)."""
    chunks = []
    while found := await chunk(reader):
        chunks.append(found)
    return chunks


def streamed(raw: bytes) -> bytes:
    """The data of the chunks in `raw` (a chunked body from its first chunk on, maybe cut
    anywhere), the last one as far as it came: what a streaming client (EventSource) has
    seen, which dispatches each message as its bytes arrive, not each chunk as a whole."""
    data, at = bytearray(), 0
    while (end := raw.find(b"\r\n", at)) > 0:  # <hex size>CRLF <data> CRLF
        size = int(raw[at:end], 16)
        data += raw[end + 2 : end + 2 + size]
        at = end + 2 + size + 2
    return bytes(data)
