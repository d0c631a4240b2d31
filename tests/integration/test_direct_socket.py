"""The write below the ASGI send chain (`gateway/feed/direct.py`) against the real uvicorn the
gateway runs (httptools), read back by a raw socket that checks HTTP/1.1 chunked framing byte
for byte. If uvicorn changes the shape the adapter reads, `socket()` is None and the first
test fails: the fan-outs would silently be back on the slow path."""

from __future__ import annotations

import asyncio
import contextlib
import socket as sockets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn

from gateway.feed import direct
from gateway.feed.turn import Held
from gateway.feed.window import Item
from gateway.security.deadlines import header_deadline
from tests.support import chunked
from tests.support.waiting import eventually

START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/event-stream")]}  # fmt: skip


def _body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


@contextlib.asynccontextmanager
async def _serve(app: Any, http: Any, send_buffer: int = 0) -> AsyncIterator[int]:
    sock = sockets.socket()
    if send_buffer:
        sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(direct.Capture(app), log_config=None, access_log=False,
                            lifespan="off", http=http)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: _started(server), bool, timeout=10)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def _started(server: uvicorn.Server) -> bool:
    return server.started


async def _chunks(port: int, reading: asyncio.Event | None = None) -> list[bytes]:
    """GET / over HTTP/1.1 on a raw socket with a small receive buffer; the body's chunks."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.transport.get_extra_info("socket").setsockopt(
        sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096
    )
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    if reading is not None:
        await reading.wait()  # read nothing until told: the server's socket fills up
    await chunked.head(reader)
    chunks = await chunked.body(reader)
    writer.close()
    return chunks


async def test_the_socket_writes_exact_chunks_between_the_asgi_sends_of_uvicorn_httptools() -> None:
    found: list[direct.Socket | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        found.append(direct.socket())
        sock = found[0]
        if sock is not None:
            for n in (1, 2, 300, 70_000):
                assert sock.write(b"x" * n)
        await send(_body(b"last\n"))
        await send(_body(b"", more=False))

    async with _serve(app, header_deadline(5.0)) as port:
        chunks = await _chunks(port)
    assert found[0] is not None, "uvicorn's httptools cycle changed shape: see direct.py"
    assert chunks == [b"first\n", b"x", b"xx", b"x" * 300, b"x" * 70_000, b"last\n"]


async def test_a_client_that_does_not_read_pauses_the_socket_and_loses_nothing() -> None:
    """Writes stop being taken at the transport's high-water mark (the caller then awaits
    the normal send, which waits for the drain); what was taken arrives whole, in order."""
    taken, reading, held = [0], asyncio.Event(), list[int | None]()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        sock = direct.socket()
        assert sock is not None
        while taken[0] < 10_000 and sock.write(b"%06d" % taken[0]):
            taken[0] += 1
        outgoing = direct.outgoing()
        assert outgoing is not None, "uvicorn's httptools cycle changed shape: see direct.py"
        held.append(outgoing.held())  # paused: past the high-water mark, still in the process
        reading.set()
        await send(_body(b"%06d" % taken[0]))  # waits for the client to drain
        held.append(outgoing.held())  # drained: what is written next has left the process
        await send(_body(b"", more=False))

    async with _serve(app, header_deadline(5.0), send_buffer=8192) as port:
        chunks = await _chunks(port, reading)
    assert 0 < taken[0] < 10_000  # ~64 KiB of transport buffer, not everything offered
    assert held[0] is not None and held[1] is not None and held[0] > held[1] >= 0, held
    assert chunks == [b"first\n", *(b"%06d" % n for n in range(taken[0] + 1))]


@pytest.mark.parametrize("http", ["h11"])
async def test_another_server_protocol_gets_no_socket_and_keeps_the_normal_path(
    http: str,
) -> None:
    found: list[direct.Socket | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        found.append(direct.socket())
        assert direct.outgoing() is None  # its consumer moves as it did before
        await send(_body(b"", more=False))

    async with _serve(app, http) as port:
        assert await _chunks(port) == [b"first\n"]
    assert found == [None]


async def test_a_response_that_has_not_started_gets_no_socket() -> None:
    found: list[direct.Socket | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        found.append(direct.socket())
        await send(START)
        await send(_body(b"", more=False))

    async with _serve(app, header_deadline(5.0)) as port:
        assert await _chunks(port) == []
    assert found == [None]


async def test_frames_held_over_one_turn_reach_the_client_as_one_exact_chunk() -> None:
    """The tail's frames of one loop turn (`gateway/feed/turn.py`) are one write: one chunk."""
    frames = [b"id: %d\ndata: {}\n\n" % n for n in range(4)]
    items = [Item(n, "k", "e", b"{}", wire=w) for n, w in enumerate(frames)]
    written: list[Item] = []

    class To:  # a feed's loop as `Held` sees it, on the real connection
        def __init__(self, sock: direct.Socket) -> None:
            self.write, self.written, self.refused = sock.write, written.extend, written.extend

        def later(self, flush: Callable[[], bool]) -> None:
            asyncio.get_running_loop().call_soon(flush)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        sock = direct.socket()
        assert sock is not None
        held = Held(16, To(sock))
        assert all(held.offer(i) for i in items[:3])  # one turn
        await asyncio.sleep(0)
        assert held.offer(items[3])  # the next
        await asyncio.sleep(0)
        await send(_body(b"last\n"))
        await send(_body(b"", more=False))

    async with _serve(app, header_deadline(5.0)) as port:
        chunks = await _chunks(port)
    assert chunks == [b"first\n", b"".join(frames[:3]), frames[3], b"last\n"]
    assert written == items


@pytest.mark.parametrize("drain", [False, True], ids=["takeover", "stop"])
async def test_a_cut_connection_takes_no_more_writes_and_keeps_the_count_from_before_the_cut(
    drain: bool,
) -> None:
    """attack verify6 V1: between a cut (`transport.abort`) and uvicorn hearing of it, a write
    vanished unseen while counted as written, and the last move went past it. Either cut
    ends the connection with a FIN (a reset made buffering clients drop acknowledged
    frames, verify9); a stop's (`drain`, verify8b V8b-1) count follows what the kernel
    still delivers until `release`, a takeover's stays the sample."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        out, sock = direct.outgoing(), direct.socket()
        assert out is not None and sock is not None
        await eventually(lambda: _acknowledged(out), bool, timeout=10)
        before = out.progress()
        out.cut(drain)
        seen.update(gone=out.gone, wrote=sock.write(b"after the cut\n"), exact=out.exact,
                    before=before, after=out.progress(), held=out.held())  # fmt: skip
        await eventually(lambda: _settled(out), bool, timeout=10)
        seen.update(settled=out.progress(), draining=out.draining())
        out.release()

    async with _serve(app, "httptools") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        received = await reader.read()  # to the cut, ended by a FIN
        writer.close()
    # all of it acknowledged, whole chunks: the body ends properly (verify9b V9b-2: httpx
    # raised on a body ended short and dropped what its chunker held)
    assert received.endswith(b"first\n\r\n0\r\n\r\n") and b"after the cut" not in received
    assert seen["gone"] and seen["exact"] and seen["held"] is None
    assert seen["wrote"] is False  # refused: the caller counts nothing as written
    before = seen["before"]
    if drain:  # the last chunk (5 bytes) and the FIN (one more) are acknowledged too
        assert seen["settled"] == (before[0] + 5 + 1, 0) and not seen["draining"]
    else:  # the sample of before the cut
        assert seen["after"] == seen["settled"] == before


async def _settled(out: direct.Outgoing) -> bool:
    return not out.draining()


async def _acknowledged(out: direct.Outgoing) -> bool:
    progress = out.progress()
    return progress is not None and progress[0] > 0 and progress[1] == 0


@pytest.mark.parametrize(("count", "size", "spacing"), [(12, 4000, 1), (48, 1000, 4)])
async def test_a_stalled_peer_is_known_to_have_every_tracked_write_its_host_acknowledged(
    count: int, size: int, spacing: int
) -> None:
    """verify6 V4: the consumer of a client that stopped reading never moved (the one marker,
    the last write, was never acknowledged); the trail finds the last write within what the
    client's host acknowledged, counted from the response's first byte. With more writes
    than the trail holds (verify7 V7-1: a client that stalled early) it finds one at most
    `spacing` writes before it, never one after."""
    frames = [b"%d" % n + b"y" * (size - 1) for n in range(count)]  # 48 KB: under the mark
    chunks = [b"%x\r\n%b\r\n" % (len(f), f) for f in frames]
    read, seen = asyncio.Event(), dict[str, Any]()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(_body(b"first\n"))
        out = direct.outgoing()
        assert out is not None
        for n, frame in enumerate(frames):
            await send(_body(frame))
            out.track([(0, n, f"ack.{n}", n + 1)])
        await read.wait()
        progress = await eventually(lambda: _progress(out), lambda p: p[0] >= seen["at"])
        assert progress is not None
        seen.update(acked=progress[0], reached=out.reached(progress[0]),
                    again=out.reached(progress[0]))  # fmt: skip
        transport = direct._cycle().transport
        seen["wrapped"] = "write" in vars(transport)
        out.settle()
        seen["unwrapped"] = "write" not in vars(transport)
        await send(_body(b"", more=False))

    async with _serve(app, "httptools") as port:
        sock, loop = await small_window_get(port), asyncio.get_running_loop()
        data = b""
        while b"first\n\r\n" not in data:  # the head and the first chunk
            data += await loop.sock_recv(sock, 1)
        start = len(data)
        ends = [start + sum(map(len, chunks[: n + 1])) for n in range(len(chunks))]
        want = ends[4] + 100  # through the fifth frame and a little: then the client stalls
        while len(data) < want:
            data += await loop.sock_recv(sock, want - len(data))
        seen["at"] = want
        read.set()
        await eventually(lambda: _has(seen, "unwrapped"), bool, timeout=10)
        sock.close()
    acked = seen["acked"]
    last = max(n for n, end in enumerate(ends) if end <= acked)
    assert 4 <= last < len(frames) - 1  # the client's host holds a few more than it read
    assert seen["reached"] is not None
    found = seen["reached"][0]
    assert last - spacing < found <= last
    assert seen["reached"] == (found, f"ack.{found}", found + 1)
    assert seen["again"] is None  # forgotten once reached
    assert seen["wrapped"] and seen["unwrapped"]


async def small_window_get(port: int) -> sockets.socket:
    """A non-blocking raw socket with a 4 KiB receive buffer that sent `GET /` to `port`."""
    sock = sockets.socket()
    sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    return sock


async def _progress(out: direct.Outgoing) -> tuple[int, int]:
    return out.progress() or (0, 0)


async def _has(seen: dict[str, Any], key: str) -> bool:
    return key in seen
