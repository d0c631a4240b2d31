"""Where a lagging client's host stands, as the trail resolves it (`gateway/feed/trail.py`,
verify7b V7b-1): on the real uvicorn connection, a raw client with a 4 KiB receive buffer
reads slowly or in bursts while frames are written steadily in writes of several frames;
when it stops, the last tracked frame within what its host acknowledged is at most a few
frames before the last one it read, and never one its host did not get. Plus the trail's
invariant over any writes and acknowledgements (Hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import random
import socket
import struct
import termios
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.feed import direct, trail
from gateway.security.deadlines import header_deadline
from tests.integration.test_direct_socket import START, _body, _serve, small_window_get
from tests.support import chunked

REPEATS = 16  # frames read that a return may send again (docs/architecture.md, (4))


def _frame(n: int) -> bytes:
    return b"id: %d\ndata: %b\n\n" % (n, b"x" * 380)  # ~400 B, as the attacks' frames


async def _write(
    out: direct.Outgoing, send: Any, stop: asyncio.Event, rate: int, seen: dict[str, Any]
) -> int:
    """Frames 0, 1, ... at `rate`/s in writes of 1-4 frames (the tail's held items) or
    40 (a feed's pull), each placed as the transport takes it (`expect`) and sent as a feed's
    awaited path sends (a paused transport waits for its drain), with a move's `reached`
    every 0.3 s (the last one found: `seen["moved"]`), until `stop`; the number of frames
    written."""
    n, rng, begun, moved = 0, random.Random(7), time.monotonic(), time.monotonic()
    stopping = asyncio.ensure_future(stop.wait())
    while not stop.is_set():
        frames = [_frame(n + k) for k in range(rng.choice([1, 2, 3, 4, 40]))]
        after, marks = sum(map(len, frames)), []
        for k, f in enumerate(frames):
            after -= len(f)
            marks.append((after, n + k, "", n + k + 1))
        out.expect(sum(map(len, frames)), marks)
        sending = asyncio.ensure_future(send(_body(b"".join(frames))))
        await asyncio.wait({sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
        n += len(frames)
        if not sending.done():  # waiting for a drain the stopped client never gives
            sending.cancel()
            break
        if time.monotonic() - moved > 0.3:  # a due move consumes the trail up to its host
            progress, moved = out.progress(), time.monotonic()
            found = None if progress is None else out.reached(progress[0])
            seen["moved"] = seen["moved"] if found is None else found[0]
        await asyncio.sleep(max(0.0, begun + n / rate - time.monotonic()))
    return n


def _read_ids(body: bytes) -> list[int]:
    """The ids of the whole frames in `body` (raw chunked bytes from the first chunk on)."""
    return [int(b.split(b"\n")[0][4:]) for b in chunked.streamed(body).split(b"\n\n")[:-1]]


async def _reader(port: int, rate: int, on: float, off: float, stop: asyncio.Event) -> Any:
    sock, loop = await small_window_get(port), asyncio.get_running_loop()
    raw, begun = bytearray(), time.monotonic()
    while b"\r\n\r\n" not in raw:
        raw += await loop.sock_recv(sock, 1)
    raw.clear()
    while time.monotonic() - begun < 3.5:
        await asyncio.sleep(0.05)
        if (time.monotonic() - begun) % (on + off) < on:
            with contextlib.suppress(BlockingIOError):  # nothing to read yet
                raw += sock.recv(max(1, rate // 20))
    stop.set()
    return sock, raw


@pytest.mark.parametrize(("rate", "on", "off"), [(5_000, 1.0, 0.0), (50_000, 0.3, 1.2)],
                         ids=["slow", "bursty"])  # fmt: skip
async def test_a_lagging_reader_is_placed_within_a_few_frames_of_what_it_read(
    rate: int, on: float, off: float
) -> None:
    stop, done, closed, seen = asyncio.Event(), asyncio.Event(), asyncio.Event(), dict[str, Any]()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        out = direct.outgoing()
        assert out is not None
        seen["moved"] = -1  # nothing yet: a return would start at the first frame
        seen["written"] = await _write(out, send, stop, 150, seen)
        await asyncio.sleep(0.1)  # the scenario is time passing: the host takes what it can
        progress = out.progress()
        assert progress is not None
        seen["reached"] = out.reached(progress[0])
        done.set()
        await closed.wait()

    async with _serve(app, header_deadline(5.0)) as port:
        sock, raw = await _reader(port, rate, on, off, stop)
        await asyncio.wait_for(done.wait(), 10)
        read = _read_ids(bytes(raw))
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        host = _read_ids(bytes(raw) + sock.recv(queued + 1)) if queued else read
        closed.set()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert read == list(range(len(read))) and len(read) > 20, read[-3:]
    # the last move goes to the last frame within what the host acknowledged, else stays
    found = seen["moved"] if seen["reached"] is None else seen["reached"][0]
    assert found <= host[-1]  # never past what the client's host got
    assert read[-1] - found <= REPEATS, (found, read[-1], host[-1], seen["written"])


class _Transport:
    def write(self, data: bytes) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(
    writes=st.lists(st.lists(st.integers(1, 3000), min_size=1, max_size=40), min_size=1,
                    max_size=120),
    acks=st.lists(st.floats(0, 1), min_size=1, max_size=120),
)  # fmt: skip
def test_the_trail_finds_the_last_frame_its_host_acknowledged_within_its_even_spacing(
    writes: list[list[int]], acks: list[float]
) -> None:
    """Any writes of any frames, any acknowledgements as they go: `reached` never returns a
    frame past the acknowledged bytes, and the one it returns is at most 2 x (frames in
    flight at the last thinning) / (KEEP - 1) + 1 frames before the last acknowledged."""
    transport = _Transport()
    t, ends, noted, acked, span = trail.Trail(transport, 1000), list[int](), 0, 1000, 1
    for w, share in zip(writes, acks * len(writes), strict=False):
        transport.write(b"x" * sum(w))  # counted by the trail's wrapper
        after, frames = sum(w), []
        for size in w:
            after -= size
            noted += 1
            frames.append((after, noted, "", noted))
            ends.append(1000 + t.sent - after)
        if t.add(frames):
            acked = max(acked, int(acked + (1000 + t.sent - acked) * share))
            span = max(span, noted - sum(e <= acked for e in ends) + 1)
            t.prune(acked)
            assert len(t.entries) <= trail.KEEP
    at = max(acked, int(acked + (1000 + t.sent - acked) * acks[-1]))
    want = sum(e <= at for e in ends)  # frames 1..want are within `at`
    got = t.reached(at)
    if want == 0:
        assert got is None
        return
    assert got is not None
    assert got[0] <= want  # never past the acknowledged bytes
    assert want - got[0] <= 2 * span / (trail.KEEP - 1) + 1
