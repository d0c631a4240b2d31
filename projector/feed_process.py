"""Catching up far behind: the feed's NATS client in a process of its own.

Catching up, the projector is bound by its one GIL (docs/benchmarks.md, "Issue 16,
session 9"): nats-py's parser, its `Msg` objects and the feed's callback cost ~7 µs of it
per event, beside decoding and applying. So when a replica starts more than
`catchup_process_above` events behind, `FeedProcess` runs the same `Feed` (its own durable
consumer, `<durable>-bulk`, from the checkpoint) in a child process (`python -m
projector.feed_process FD`, a fresh interpreter, never a fork of one holding threads),
which hands each batch over a socketpair as one msgpack frame: the parent's cost is a
read and one decode per batch, on another core than the NATS client's. The child
acknowledges a batch to the server when the next is asked for (a consumer only it uses,
deleted at the end, by the parent too if the child could not, and by the server after
`BULK_INACTIVE_S` unused; the read model's checkpoint is the truth, as for `Feed`). It
ends after the first batch that leaves at most `until` events pending; the replica then
follows with its own `Feed` from the new checkpoint (`projector/main.py`).

The child dies with its parent: it reads the requests from the socket, whose other end
closes when the parent is gone, however it ended. Anything that ends the child (its NATS
errors, a missing delivery, a crash) reaches the parent as `FeedLost`. Its settings,
NATS credentials included, come over the socket, never on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import Subjects
from common.telemetry import configure_logging
from projector import collector
from projector.feed import Batch, Delivery, Feed, FeedLost
from projector.prestage import Prestaged, prestage

log = structlog.get_logger()
BULK_INACTIVE_S = 300.0  # the server deletes a bulk consumer unused this long (both gone)
_NEXT, _FOLLOW, _QUIT = "next", "follow", "quit"
SHARE_STEP = 10  # percent: how much the child's share of staging moves per batch
STOP_WAIT_S = 5.0  # how long `close` waits for the child to end before killing it
CONNECT_WAIT_S = 5.0  # how long the child tries to reach NATS before it gives up


class _Frame(msgspec.Struct, array_like=True, frozen=True):
    """Child to parent: `kind` "ready" (consumer made), "batch" (`pending`, `done`,
    `deliveries`, and `prestaged` if staged), "lost" or "failed" (`error`)."""

    kind: str
    pending: int = 0
    done: bool = False
    deliveries: list[tuple[int, str, bytes]] = []
    error: str = ""
    prestaged: Prestaged | None = None


class _Start(msgspec.Struct, array_like=True, frozen=True):
    """Parent to child, first: where to read from and how (`Feed`'s arguments)."""

    nats: NatsSettings
    stream: str
    durable: str
    subject: str
    after: int
    until: int
    feed: dict[str, Any]
    app: str = ""  # the app package batches are staged with ("": not staged)


_encode = msgspec.msgpack.Encoder().encode
_frames = msgspec.msgpack.Decoder(_Frame)
_requests = msgspec.msgpack.Decoder(tuple[str, int])
_LENGTH = struct.Struct("!Q")  # each message on the socket: its length, then its bytes


def feed_for(
    nc: Client, nats: NatsSettings, settings: ProjectorSettings, durable: str, after: int,
    until: int | None = None, inactive_s: float | None = None, app: str = "",
) -> Feed | FeedProcess:  # fmt: skip
    """A feed of `durable` from `after` + 1 with a replica's batching (pulls of
    `batch_size`, catch-up batches from `catchup_batch_size` to `catchup_batch_max`): in a
    feed process that ends after a batch leaving at most `until` pending (-1: when
    closed), or in this process when `until` is None (its consumer deleted by the server
    once unused `inactive_s`, if given). A feed process stages its batches with app
    package `app` (`projector/prestage.py`; "": it does not). Pulls of the catch-up size
    made the server drop a busy client as a slow consumer at 1M events
    (docs/architecture.md)."""
    where = (nats.stream, durable, Subjects(nats.prefix).all_events, after)
    options: dict[str, Any] = {
        "size": settings.batch_size,
        "linger_s": settings.batch_ms / 1000,
        "catchup_size": settings.catchup_batch_size,
        "catchup_max": settings.catchup_batch_max,
    }
    if until is not None:
        return FeedProcess(nc, nats, *where, until=until, app=app, **options)
    return Feed(nc, *where, inactive_s=inactive_s, **options)


def _send(sock: socket.socket, data: bytes) -> None:
    """One length-prefixed message (blocking)."""
    sock.sendall(_LENGTH.pack(len(data)))
    sock.sendall(data)


def _receive(sock: socket.socket) -> bytearray:
    """One length-prefixed message (blocking); EOFError when the other end closed. A batch
    of ~75 MB is read by one call (`MSG_WAITALL`), not one per socket buffer: each read
    takes the GIL back, which a thread running Python holds for up to 5 ms."""
    size = _LENGTH.unpack(_exactly(sock, _LENGTH.size))[0]
    return _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got, socket.MSG_WAITALL)
        if n == 0:
            raise EOFError("the other end closed")
        got += n
    return data


class FeedProcess:
    """`Feed`'s interface (`start`, `next`, `ack`, `follow`, `close`) over a child process
    running a `Feed` on `<durable>-bulk` from `after` + 1, until a batch leaves at most
    `until` events pending (then `next` answers None: follow with a `Feed`). `feed`
    holds `Feed`'s keyword arguments (sizes, linger). Raises `FeedLost` for whatever ends
    the child."""

    def __init__(
        self, nc: Client, nats: NatsSettings, stream: str, durable: str, subject: str,
        after: int, until: int, app: str = "", **feed: Any,
    ) -> None:  # fmt: skip
        self.nc, self.durable = nc, f"{durable}-bulk"
        self._start = _Start(nats, stream, self.durable, subject, after, until, feed, app)
        self._conn: socket.socket | None = None
        self.process: subprocess.Popen[bytes] | None = None  # the child, once started
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="feed-rx")
        self._asked = False  # a batch is asked for and has not come yet
        self._share = SHARE_STEP * 5  # percent of the next batch the child stages (`follow`)
        self._done = False

    async def start(self) -> FeedProcess:
        """Start the child and wait until its consumer exists. Raises `FeedLost`."""
        ours, theirs = socket.socketpair()
        self._conn = ours
        with theirs:  # closed here once the child has it: EOF is then the child's end
            command = [sys.executable, "-m", "projector.feed_process", str(theirs.fileno())]
            self.process = await asyncio.to_thread(
                subprocess.Popen, command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
            )
        _send(ours, _encode(self._start))
        frame = await self._receive()
        if frame.kind != "ready":
            raise FeedLost(f"feed process: {frame.error or frame.kind}")
        log.info(
            "feed_process_started",
            pid=self.process.pid,
            after=self._start.after,
            stages=bool(self._start.app),  # whether it stages batches (projector/prestage.py)
        )
        return self

    async def next(self, stop: asyncio.Event) -> Batch | None:
        """The child's next batch; None once `stop` is set or the child's range is done."""
        if self._done or stop.is_set():
            return None
        assert self._conn is not None
        if not self._asked:
            try:
                _send(self._conn, _encode((_NEXT, self._share if self._start.app else 0)))
            except OSError as exc:  # e.g. a broken pipe: the child is gone
                raise FeedLost(f"feed process ended ({exc!r})") from exc
            self._asked = True
        received = asyncio.ensure_future(self._receive())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((received, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not received.done():
            received.cancel()  # its thread ends with the child (`close`)
            return None
        frame = received.result()
        self._asked = False
        if frame.kind != "batch":
            raise FeedLost(f"feed process: {frame.error or frame.kind}")
        self._done = frame.done
        return Batch(frame.deliveries, frame.pending, "", frame.prestaged)

    async def ack(self, batch: Batch) -> None:
        """Nothing: the child acknowledges its consumer (the checkpoint is the truth)."""

    def follow(self, aggregates: int) -> None:
        """Size the child's next catch-up batches for `aggregates` aggregates; called once
        a batch is applied, it also balances the work of staging between the two
        processes: the child stages `SHARE_STEP` percent more of the next batch asked for
        if the one asked for while this one was applied is here already (the child keeps
        up: the projector is the slower of the two), else that much less; the projector
        stages the rest (`prestage.completed`)."""
        step = -SHARE_STEP if self._asked else SHARE_STEP
        self._share = min(100, max(0, self._share + step))
        if self._conn is not None and not self._done:
            with contextlib.suppress(OSError):
                _send(self._conn, _encode((_FOLLOW, aggregates)))

    async def close(self, delete: bool = True) -> None:
        """End the child, killing it after `STOP_WAIT_S`, and make sure its consumer is gone
        (whatever `delete` says, `Feed.close`'s signature: it has no use past the child)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                _send(self._conn, _encode((_QUIT, 0)))
                self._conn.shutdown(socket.SHUT_WR)  # its reader ends: nothing holds it
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
            log.info("feed_process_ended", pid=self.process.pid, status=self.process.returncode)
            if self.process.returncode != 0:  # it may have died before deleting its consumer
                with contextlib.suppress(Exception):
                    await self.nc.jetstream().delete_consumer(self._start.stream, self.durable)
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)  # wakes a read still waiting
            self._conn.close()
        self._rx.shutdown(wait=False)

    async def _receive(self) -> _Frame:
        conn = self._conn
        assert conn is not None
        try:
            data = await asyncio.wrap_future(self._rx.submit(_receive, conn))
        except (EOFError, OSError) as exc:
            raise FeedLost(f"feed process ended ({exc!r})") from exc
        return _frames.decode(data)


def _child(fd: int) -> None:
    """The child's entry point (`python -m projector.feed_process FD`): read its `_Start`
    from the socket `fd`, then serve batches until asked to quit, EOF (the parent is gone)
    or the range is done."""
    configure_logging("projector")
    conn = socket.socket(fileno=fd)
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        start = msgspec.msgpack.decode(_receive(conn), type=_Start)
        where = (start.stream, start.durable, start.subject, start.after)
        options = {**start.feed, "inactive_s": BULK_INACTIVE_S}
        asyncio.run(_serve(conn, start, where, options))


async def _serve(
    conn: socket.socket, start: _Start, where: tuple[str, str, str, int], options: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    io = ThreadPoolExecutor(2, thread_name_prefix="feed-io")  # the requests' reader, a send

    async def send(frame: _Frame, share: int = 0) -> None:  # off the loop: it reads NATS
        def framed() -> bytes:
            head = frame.deliveries[: len(frame.deliveries) * share // 100]
            if head and start.app:
                staged = prestage(start.app, head)
                return _encode(msgspec.structs.replace(frame, prestaged=staged))
            return _encode(frame)

        await loop.run_in_executor(io, lambda: _send(conn, framed()))

    try:
        nc = await bus.connect(start.nats, name=f"ironstar-{where[1]}", wait_s=CONNECT_WAIT_S)
    except Exception as exc:  # e.g. NATS unreachable: the parent goes on without us
        await send(_Frame("failed", error=repr(exc)), 0)
        return
    feed = Feed(nc, *where, **options)
    try:
        await _batches(conn, io, feed, start.until, send)
    except FeedLost as exc:
        await send(_Frame("lost", error=str(exc)), 0)
    except (EOFError, OSError):
        pass  # the parent is gone
    except Exception as exc:  # whatever ended it, the parent restarts the feed
        await send(_Frame("failed", error=repr(exc)), 0)
    finally:
        with contextlib.suppress(Exception):
            await feed.close(delete=True)
        await bus.goodbye(nc)
        io.shutdown(wait=False, cancel_futures=True)


async def _batches(
    conn: socket.socket, io: ThreadPoolExecutor, feed: Feed, until: int,
    send: Callable[[_Frame, int], Awaitable[None]],
) -> None:  # fmt: skip
    """Answer the parent's requests with `feed`'s batches (the share of each it asks for
    staged) until it quits or goes (EOF), or the range is done; a batch is acknowledged
    when the next is asked for."""
    loop = asyncio.get_running_loop()
    asked: asyncio.Queue[int | None] = asyncio.Queue()  # a batch (% staged); None: quit
    stop = asyncio.Event()

    async def read() -> None:
        try:
            while True:
                kind, value = _requests.decode(await loop.run_in_executor(io, _receive, conn))
                if kind == _FOLLOW:
                    feed.follow(value)
                else:
                    asked.put_nowait(value if kind == _NEXT else None)
        finally:  # quit or EOF
            stop.set()
            asked.put_nowait(None)

    reader = asyncio.create_task(read())
    stretch = collector.Stretch()  # no cyclic collection over the batches it holds
    try:
        await feed.start()
        await send(_Frame("ready"), 0)
        held: Batch | None = None
        while (share := await asked.get()) is not None:
            if held is not None:
                await feed.ack(held)
            held = await feed.next(stop)
            if held is None:
                return
            stretch.hold(len(held.deliveries))
            done = held.pending <= until
            await send(_Frame("batch", held.pending, done, held.deliveries), share)
            if done:
                await asked.get()  # the parent applies it, then closes us
                return
    finally:
        stretch.release()
        reader.cancel()


__all__ = ["Delivery", "FeedProcess", "feed_for"]

if __name__ == "__main__":
    _child(int(sys.argv[1]))
