"""Writing a response's body below the ASGI send chain: the one adapter to the server's socket.

At 10,000 clients a delivery is one small write per client, and each went through the whole
chain (the feed's task woken, Litestar's streaming response, its exception middleware, the
front door's wrapper, uvicorn's `send`, the transport; ~50 % of the gateway's busy time at
10,000 clients x 10,000 deliveries/s, docs/benchmarks.md). The live tail
(`gateway/feed/tail.py`) and a live query's fan-out (`gateway/live/`) write a caught-up
feed's frame straight to its connection instead, from their own loop (`Socket.write`).

Only what uvicorn's httptools protocol would write is written: the body as one HTTP/1.1 chunk
(`<size in hex>\\r\\n<body>\\r\\n`, RFC 9112 §7.1), on a response that started with chunked
framing, and only while the connection is open and its transport is not paused (its buffer
under the high-water mark: a client that does not read sends the feed back to its own,
awaited, path). The response's start (status, security headers) and its end (the last chunk)
always go through the normal chain.

`Capture` (outermost, `gateway/main.py`) keeps the server's own `send` for the request's
task; `socket()` turns it into a `Socket` only when it is exactly the shape this module knows
(uvicorn's `httptools_impl.RequestResponseCycle.send`, not overridden, the attributes read
below): anything else — h11, another server, a newer uvicorn that moved them — is None, and
the feed keeps the normal path. `tests/integration/test_direct_socket.py` fails when
uvicorn's shape changes, so that fallback never goes unnoticed. No middleware may transform
a feed's body (compression would be bypassed): the app has none, and adding one means
turning this path off.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.feed import sockets
from gateway.feed.trail import TRAIL, Frame, Trail

_SEND: contextvars.ContextVar[Send | None] = contextvars.ContextVar("raw_send", default=None)
# what runs when a connection is lost, per protocol (`Lost`): one dict for the process, not an
# attribute patched onto each protocol (that made uvicorn's protocol a full dict: 1.7 KiB a feed)
_HOOKS: dict[Any, tuple[Callable[[], None], ...]] = {}
P = TypeVar("P")


class Lost:
    """Mixin for the server's protocol class (`tracked`): when its connection is lost, the hooks
    registered for it (`on_lost`) run first, while its socket is still open."""

    def connection_lost(self, exc: Exception | None) -> None:
        """Run this connection's hooks once, then the protocol's own `connection_lost`."""
        for hook in _HOOKS.pop(self, ()):
            hook()
        super().connection_lost(exc)  # type: ignore[misc]


def tracked(protocol: type[P]) -> type[P]:
    """`protocol` (uvicorn's `http=` class) with `Lost` hooks (`gateway/main.py`)."""
    return type(f"Tracked{protocol.__name__}", (Lost, protocol), {})


def on_lost(protocol: Any, hook: Callable[[], None]) -> bool:
    """Run `hook` (never raising) when `protocol`'s connection is lost; False when the protocol
    has no hooks (another server, or uvicorn not given a `tracked` class)."""
    if not isinstance(protocol, Lost):
        return False
    _HOOKS[protocol] = (*_HOOKS.get(protocol, ()), hook)
    return True


def forget(protocol: Any, hook: Callable[[], None]) -> None:
    """`hook` no longer runs when `protocol`'s connection is lost."""
    left = tuple(h for h in _HOOKS.get(protocol, ()) if h is not hook)
    if left:
        _HOOKS[protocol] = left
    else:
        _HOOKS.pop(protocol, None)


class Capture:
    """ASGI wrapper, outermost: remembers the server's `send` of each HTTP request for the
    request's task (a context variable; uvicorn runs each request in a task of its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        token = _SEND.set(send)
        try:
            await self.app(scope, receive, send)
        finally:
            _SEND.reset(token)


class Socket:
    """A started chunked response's connection, written past the ASGI chain."""

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle, self._flow, self._transport = cycle, cycle.flow, cycle.transport

    def write(self, body: bytes) -> bool:
        """Write `body` (non-empty) as one chunk now; False, writing nothing, when the connection
        is gone or its transport is paused (the caller takes its normal, awaited path)."""
        cycle = self._cycle
        transport = self._transport
        if cycle.disconnected or cycle.response_complete or self._flow.write_paused:
            return False
        if transport.is_closing():  # cut or lost, not yet told: a write would vanish unseen
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True


class Outgoing:
    """How far a started response's bytes got (see `outgoing`): handed to the transport,
    to the kernel, acknowledged by the peer's TCP. On a TCP socket it samples the kernel's
    counters once more when the connection is lost, just before the transport closes the
    socket (it wraps the protocol's `connection_lost`): what a client that left had got.
    Where recent frames end is tracked from the first `track` on (`gateway/feed/trail.py`)."""

    __slots__ = ("_after", "_cycle", "_dropped", "_final", "_lost", "_tcp", "_trail", "exact")

    def __init__(self, cycle: Any, tcp: sockets.Sock | None) -> None:
        self._cycle, self._tcp = cycle, tcp  # None: not a TCP socket (no acknowledgements)
        self._final: tuple[int, int] | None = None
        self.exact = False  # `_final` was sampled before the transport dropped anything (a cut)
        self._lost: Any = None
        self._trail: Trail | None = None  # from the first `track` on
        self._after: sockets.Duplicate | None = None  # a `drain` cut's duplicate of the socket
        self._dropped = 0  # bytes its transport held at a `drain` cut (dropped)
        if tcp is not None:
            protocol = cycle.transport.get_protocol()
            if not on_lost(protocol, self._sample_final):  # a protocol without hooks: patched
                self._lost = protocol.connection_lost
                protocol.connection_lost = self._connection_lost

    def _sample_final(self) -> None:
        if self._final is None:  # a cut sampled it already, before its buffer was dropped
            with contextlib.suppress(OSError):
                self._final = self._sample()

    def _connection_lost(self, exc: Exception | None) -> None:
        try:
            self._sample_final()
        finally:
            self._lost(exc)

    @property
    def gone(self) -> bool:
        """The connection is gone or going (its transport closing: writes to it vanish and what
        its buffer held is dropped): nothing more is written to it."""
        cycle = self._cycle
        return bool(cycle.disconnected) or bool(cycle.transport.is_closing())

    def cut(self, drain: bool = False) -> None:
        """End the connection now (`transport.abort`: what its transport holds is dropped; a
        FIN follows what the kernel queued, which it still sends), sampling the kernel's
        counters first so the last move counts what was written before anything was dropped
        (`exact`). `drain` (the gateway is stopping, the client reads on): `progress` follows
        what the kernel still delivers, on a duplicate of the socket, until `release`. A
        takeover does not wait on it: its old connection may be dead. Never a reset: a client
        whose library drops what it buffered on a reset (asyncio's `StreamReader`, httpx)
        would miss frames its host acknowledged (verify9: a takeover's reset, 107-110). When
        its transport holds nothing, the body's last chunk is written first (V9b-2)."""
        tcp, cycle = self._tcp, self._cycle
        if tcp is not None and self._final is None and not self.gone:
            with contextlib.suppress(OSError):  # closed under us: the loss samples it
                self._final, self.exact = self._sample(), True
        if cycle.chunked_encoding is True and not self.gone and not self.held():
            # whole chunks only went out: end the body (`0\r\n\r\n`, RFC 9112 §7.1) — a client
            # seeing it end short raises and may drop what it buffered (httpx, verify9b V9b-2)
            cycle.transport.write(b"0\r\n\r\n")
        if tcp is not None and drain and self.exact and not self.gone:
            with contextlib.suppress(OSError):
                self._dropped = int(cycle.transport.get_write_buffer_size())
                self._after = sockets.finishing(tcp)
        cycle.transport.abort()

    def draining(self) -> bool:
        """Whether the kernel still sends bytes of a connection cut with `drain`."""
        with contextlib.suppress(OSError, ValueError):
            return self._after is not None and sockets.sent(self._after)[1] > 0
        return False

    def release(self) -> None:
        """Close the duplicate a `drain` cut keeps (what the kernel still holds is sent on)."""
        after, self._after = self._after, None
        if after is not None:
            after.close()

    def track(self, frames: list[Frame]) -> None:
        """The frames of a write just handed to the transport, in order (`trail.Frame`):
        remember where their bytes end, O(1) amortized per frame (the first write since
        nothing was in flight, and one write in `TRAIL - KEEP` frames while the peer lags,
        samples the kernel's counters: two syscalls). Nothing without TCP counters or once
        the connection is gone."""
        trail = self._placed()
        if trail is not None and trail.add(frames):
            self._prune(trail)

    def expect(self, body: int, frames: list[Frame]) -> None:
        """As `track`, for the chunk of a `body`-byte response body about to be sent through
        the ASGI chain (`Trail.expect`: placed when the transport takes it)."""
        trail = self._placed()
        if trail is not None:
            if len(trail.entries) > TRAIL:
                self._prune(trail)
            trail.expect(len(b"%x\r\n" % body) + body + 2, frames)

    def _placed(self) -> Trail | None:
        trail = self._trail
        if trail is None:  # the first write since nothing was in flight: placed by a sample
            if self._tcp is None or self.gone:
                return None
            try:
                base = sum(self._sample())
            except OSError:  # closed under us
                return None
            trail = self._trail = Trail(self._cycle.transport, base)
        return trail

    def _prune(self, trail: Trail) -> None:
        acked: int | None = None  # closed under us: only thinned
        with contextlib.suppress(OSError):
            acked = self._sample()[0]
        trail.prune(acked)

    def reached(self, acked: int) -> tuple[int, str, int] | None:
        """The last tracked frame whose bytes all are within the peer's `acked` bytes (from
        `progress`): (sequence, ack subject, items noted), forgetting it and those before it;
        None when there is none (or where writes end is not known yet)."""
        return None if self._trail is None else self._trail.reached(acked)

    def settle(self) -> None:
        """Nothing is in flight: forget the tracked writes (the transport's `write` unwrapped),
        so a feed that keeps up holds no trail between its moves."""
        trail, self._trail = self._trail, None
        if trail is not None:
            del self._cycle.transport.write  # the instance's wrapper: its class's method again

    def held(self) -> int | None:
        """Bytes written to the connection that its transport still holds (not yet handed to the
        kernel: lost if the process dies); None once the connection is gone."""
        if self.gone:
            return None
        return int(self._cycle.transport.get_write_buffer_size())

    def progress(self) -> tuple[int, int] | None:
        """(bytes the peer's TCP acknowledged since the connection opened, bytes written and not
        yet acknowledged: in the kernel's send queue (SIOCOUTQ) or the transport's buffer).
        Their sum is every byte written so far, so a frame whose end is at that sum is
        delivered once the first number reaches it. Once the connection is gone: the sample
        taken when it was lost (None: not known). Without TCP_INFO (not Linux, not TCP) the
        first number stays 0 and the second counts only the transport's buffer: bytes are
        then only known to have left the process."""
        if self.gone:
            if self._after is not None:  # cut with `drain`: the kernel still sends
                with contextlib.suppress(OSError, ValueError):
                    acked, queued = sockets.sent(self._after)
                    return acked, queued + self._dropped
            return self._final
        if self._tcp is None:
            return 0, int(self._cycle.transport.get_write_buffer_size())
        try:
            return self._sample()
        except OSError:  # closed under us
            return self._final

    def _sample(self) -> tuple[int, int]:
        assert self._tcp is not None
        acked, queued = sockets.sent(self._tcp)
        return acked, queued + int(self._cycle.transport.get_write_buffer_size())


def cut(outgoing: Outgoing | None = None) -> Callable[[bool], None] | None:
    """How the running request's connection is cut when a newer one of its consumer takes over
    or the gateway stops (`outgoing.cut(drain)`, else `transport.abort`;
    `gateway/feed/takeover.py`); None on another server."""
    if outgoing is not None:
        return outgoing.cut
    cycle = _cycle()
    abort = getattr(getattr(cycle, "transport", None), "abort", None)
    return (lambda drain: abort()) if callable(abort) else None


class Watch:
    """The running request's task, cancelled once when its connection is lost (`watch`): what
    Litestar's streaming response learns with a second task per response listening for
    `http.disconnect` (issue 15, memory per idle client). `lost`: the connection is gone."""

    __slots__ = ("_protocol", "_task", "lost")

    def __init__(self, protocol: Any, task: asyncio.Task[Any], lost: bool) -> None:
        self._protocol, self._task, self.lost = protocol, task, lost

    def __call__(self) -> None:
        self.lost = True
        self._task.cancel()

    def close(self) -> None:
        """Stop watching (the body ended)."""
        forget(self._protocol, self)

    def swallow(self) -> bool:
        """Whether the running task's cancellation was only this watch's (then taken back)."""
        return self.lost and self._task.uncancel() == 0


def watch() -> Watch | None:
    """A `Watch` on the running request's connection; None when the server is not the one this
    module knows or its protocol has no `Lost` hooks. Reading is resumed as an ASGI `receive`
    would (a pipelined request may have paused it), so a client that leaves is noticed."""
    cycle = _cycle()
    task = asyncio.current_task()
    if cycle is None or task is None:
        return None
    protocol = cycle.transport.get_protocol()
    if not isinstance(protocol, Lost):
        return None
    if cycle.disconnected or cycle.response_complete:
        return Watch(protocol, task, lost=True)
    cycle.flow.resume_reading()
    watching = Watch(protocol, task, lost=False)
    on_lost(protocol, watching)
    return watching


def outgoing() -> Outgoing | None:
    """The running request's started response as an `Outgoing` (None on another server, see the
    module docstring): a feed moves its consumer only past bytes that left the process."""
    cycle = _cycle()
    if cycle is None:
        return None
    try:
        ready = cycle.response_started and callable(cycle.transport.get_write_buffer_size)
    except AttributeError:
        return None
    if not ready or not isinstance(cycle.disconnected, bool):
        return None
    tcp = sockets.tcp(cycle.transport.get_extra_info("socket"))
    if tcp is not None:  # a slow client's unacknowledged range stays small (V7b-1)
        sockets.bound_unsent(tcp)
    return Outgoing(cycle, tcp)


def socket() -> Socket | None:
    """The running request's connection as a `Socket`, once its response started with
    chunked framing; None when the server is not the one this module knows (see the
    module docstring) or the response cannot take it (not started, HEAD, a length)."""
    cycle = _cycle()
    if cycle is None:
        return None
    try:
        ready = (
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and cycle.scope["method"] != "HEAD"
            and isinstance(cycle.flow.write_paused, bool)
            and callable(cycle.transport.write)
        )
    except AttributeError:
        return None
    return Socket(cycle) if ready else None


def _cycle() -> Any:
    """The running request's uvicorn httptools cycle, when its `send` is exactly that one's."""
    send = _SEND.get()
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not RequestResponseCycle or getattr(send, "__func__", None) is not _SEND_FN:
        return None
    return cycle


_SEND_FN = RequestResponseCycle.send
