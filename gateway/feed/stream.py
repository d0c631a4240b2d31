"""The loop behind one SSE response: pull, apply the client's controls, write, ack.

Deliveries are written in as few writes as possible (what arrived together is one write),
acked after the write returned: the socket's drain paces the consumer.
Everything that is not written is accounted for: superseded by a later event of the same
aggregate (debounce, drop-oldest) or dropped with a `lag` notice (the dropping policies).

Three places write events, and a control that changes what is written applies in each: the
tail's frames (`_Run` in `events`), `_Run.shape` (windows, policies), `_Run.finish` (last flush).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg

from common.jetstream import ack_position
from common.settings import GatewaySettings
from gateway import metrics
from gateway.feed import direct, reading
from gateway.feed.client import ClientFeed
from gateway.feed.controls import Controls
from gateway.feed.delivery import DeliveryOrder, LazyAcks, per_group, per_item
from gateway.feed.pipeline import Pipeline, Renderer
from gateway.feed.policy import Policy, Skip, overflowing, unbounded_notice
from gateway.feed.process import Background
from gateway.feed.turn import Held
from gateway.feed.window import Item
from gateway.feed.wire import comment, frame, retry

INF = float("inf")
log = structlog.get_logger()


@dataclass(slots=True)
class Session:
    """One SSE response's parts: its feed and controls, the gateway's settings and `closing` event,
    the connection's `client_id` (as counted by the inbox), the process's `background` for the last
    ack, and `after`, the stream sequence the client has everything up to."""

    feed: ClientFeed
    controls: Controls
    settings: GatewaySettings
    closing: asyncio.Event
    client_id: str
    background: Background
    after: int = 0  # the stream sequence the client already has everything up to
    ends: float | None = None  # the token's `exp` (seconds since 1970): the feed ends there
    released: bool = False

    def release(self) -> None:
        """Give back the feed and the connection slot, once."""
        if not self.released:
            self.released = True
            self.feed.close()
            self.feed.inbox.release(self.client_id)
            log.info("sse_closed", client_id=self.client_id, consumer=self.feed.name)

    def __del__(self) -> None:  # a body never started still releases (not weakref.finalize:
        self.release()  # ~0.4 KiB a feed, issue 15)


def stream(session: Session, hello: bytes) -> AsyncIterator[bytes]:
    """The response body (never started, it releases as its `session` is collected)."""
    return events(session, hello)


def _items(msgs: list[Msg], trace: set[str] | None = None, backlog: int = 0) -> list[Item]:
    """Items of `msgs` (undecodable ones marked skipped); each one's `pending` counts what
    comes after it for this client: the rest of `msgs`, plus `backlog` (held in the
    gateway or waiting in the stream)."""
    items = []
    for index, m in enumerate(msgs):
        behind = backlog + len(msgs) - 1 - index
        one = reading.item(ack_position(m.reply).stream_seq, m.subject, m.data, m.reply, behind)
        if trace is not None and len(trace) < 100 and one.event is not None:
            trace.add(one.event.metadata.correlation_id)
        items.append(one)
    return items


async def events(session: Session, hello: bytes) -> AsyncIterator[bytes]:
    """The response body of one feed: `retry:` and `hello` first, then what the client's
    controls make of its deliveries, until the gateway closes, the client leaves or the
    feed cannot go on; always ending with a `retry:` so the client comes back."""
    run, feed = _Run(session), session.feed
    try:
        yield retry(session.settings.sse_retry_ms) + hello
        del hello  # not held for the feed's life
        run.socket = run.direct_socket()  # the response has started
        run.acks.outgoing = direct.outgoing()  # F1; `unbounded` too (V2)
        if feed.handover is not None:  # a named feed: now it can be cut (F3)
            feed.handover.ready(direct.cut(run.acks.outgoing))
        run.join_tail()
        while not session.closing.is_set() and not feed.gone and not run.expired():
            if feed.overflowed:
                await run.acks.finish(last=False)  # the last move before the ending frame
                yield run.overflow_notice()
                return
            if feed.fell:  # left the tail: pull the consumer from the last event written
                await run.back_to_consumer()
                continue
            now = await run.wait()
            step = await run.take(now)
            if step is None:  # a hole in the consumer's deliveries: resume by id
                break
            if step.items and run.plain and step.live:  # the tail's frames, as they are
                metrics.client_lag.observe(step.lag)
                started = time.perf_counter()
                yield run.acks.expect(per_item(step.items, run.renderer.one))
                metrics.emit_seconds.observe(time.perf_counter() - started)
                await run.acks.written(step.items[-1], len(step.items), placed=True)
                run.wrote()
                continue
            chunk, written = await run.shape(step, now)
            if chunk:
                started = time.perf_counter()
                yield chunk
                metrics.emit_seconds.observe(time.perf_counter() - started)
                if written is not None:
                    await run.acks.written(*written, placed=True)
                run.wrote()
            elif now >= run.last_write + run.keepalive_s:
                yield comment("keep-alive")
                run.last_write = now
            run.rejoin_tail()
        rest = run.finish()
        if rest:
            yield rest
            await run.written_rest()
        await run.acks.finish(last=False)  # before the ending frame: a return finds it (F2)
        if run.expired():  # as a live query's feed (attack15 F4): sign in again to resume
            yield frame(json.dumps({"reason": "the token expired; sign in again"}), "expired")
            return
        yield _comeback(session.settings)
    except Exception:  # a bug must not leave a client without a way back: it resumes by id
        log.exception("sse_stream_failed", client_id=session.client_id, consumer=feed.name)
        yield _comeback(session.settings)
    finally:
        session.release()
        session.background.spawn(run.acks.finish())


def _comeback(settings: GatewaySettings) -> bytes:
    """Shutting down: tell the client to come back soon, spread out (0.5 to 1.5 times
    `sse_retry_ms`) so the other replicas are not stormed."""
    return retry(int(settings.sse_retry_ms * random.uniform(0.5, 1.5)))


@dataclass(slots=True)
class _Step:
    """What one turn of the loop took: `items` for the client, `lag` events still behind
    them (in the stream or held in the gateway), the consumer's deliveries `taken` (empty
    for the tail's items, `live`)."""

    items: list[Item]
    lag: int
    taken: list[Msg]
    live: bool


class _Run:
    """The state of one response's loop, and its named steps."""

    def __init__(self, session: Session) -> None:
        self.session, self.feed, self.ctl = session, session.feed, session.controls
        settings = session.settings
        self.keepalive_s = settings.sse_keepalive_s
        self.loop = asyncio.get_running_loop()
        self.renderer, self.pipeline = Renderer(self.ctl), Pipeline(self.ctl)
        if self.ctl.policy is Policy.UNBOUNDED:
            self.feed.cap = settings.sse_unbounded_cap
        self.acks = LazyAcks(
            self.feed,
            capacity=self.ctl.capacity,
            loop=self.loop,
            client_id=session.client_id,
            after=session.after,
            flow=self.ctl.policy is Policy.UNBOUNDED,
        )
        self.order = DeliveryOrder(session.after, self.feed.delivered)
        self.touch_every_s = min(self.keepalive_s, settings.sse_inactive_s / 3)
        self.plain = self.ctl.format == "json" and self.ctl.debounce_s is None and (
            self.ctl.batch_s is None
        )  # fmt: skip
        self.last_write = self.loop.time()
        self.touched = -INF  # a joined feed touches its consumer first
        self._rest: list[list[Item]] = []
        self.socket: direct.Socket | None = None  # the tail writes here while the loop waits
        # the tail's items for this feed while its loop waits, written when the turn ends
        self.held = Held(self.ctl.capacity, self)
        ends = session.ends  # the token's expiry in the loop's clock
        self.ends_at = INF if ends is None else self.loop.time() + ends - time.time()

    def expired(self) -> bool:
        """The token the feed was opened with has expired (`Session.ends`)."""
        return self.loop.time() >= self.ends_at

    def direct_socket(self) -> direct.Socket | None:
        """The connection the tail may write to itself: a plain feed's, not an `unbounded`
        one's (its safety cap counts what it holds while its own writes are blocked)."""
        if not self.plain or self.ctl.policy is Policy.UNBOUNDED:
            return None
        return direct.socket()

    def join_tail(self) -> None:
        """Start on the live tail when it can continue exactly where the client is."""
        if self.feed.tail is not None:
            self.feed.tail.join(self.feed, self.feed.filters, self.order.after)

    def overflow_notice(self) -> bytes:
        """The `lag` notice that ends an `unbounded` feed past its cap or budget."""
        settings, feed = self.session.settings, self.feed
        return unbounded_notice(settings.sse_unbounded_cap, feed.overflowed, feed.overflow_reason)

    async def back_to_consumer(self) -> None:
        """The tail let the feed go: once its writes left the process, pull from the last."""
        log.info("sse_tail_left", client_id=self.session.client_id, reason=self.feed.fell)
        await self.acks.left_process(lambda: self.session.closing.is_set() or self.expired())
        self.acks.clear()
        self.feed.gone = await self.feed.resume_pull(self.acks.seq + 1)
        self.order.delivered = 0

    async def wait(self) -> float:
        """Ask for more when the feed pulls, then sleep until a delivery or the first
        deadline (keep-alive, a window, an ack, a touch); the loop's time after it."""
        feed, tail, live = self.feed, self.feed.tail, self.feed.live is not None
        if not live and feed.should_ask():
            await feed.ask(self.ctl.capacity, self.keepalive_s, no_wait=bool(tail and tail.ready))
        wake_at = min(
            self.last_write + self.keepalive_s, self.pipeline.deadline() or INF,
            self.acks.deadline(), self.ends_at,
        )  # fmt: skip
        if live:
            wake_at = min(wake_at, self.touched + self.touch_every_s)
        feed.sink = self.held.offer if live and self.socket is not None else None
        try:
            await feed.wait(max(0.0, wake_at - self.loop.time()))
        finally:
            feed.sink = None
            self.held.flush()  # held frames first: they precede anything the loop writes
        if self.acks.due():
            await self.acks.flush()
        feed.expired = False
        return self.loop.time()

    def later(self, flush: Callable[[], bool]) -> None:
        """`Writer.later`: at the end of the turn, with every feed's held frames."""
        tail = self.feed.tail
        assert tail is not None  # only a joined feed is offered the tail's items
        tail.after_turn(flush)

    def write(self, body: bytes) -> bool:
        """`Writer.write`: one chunk below the ASGI chain."""
        return self.socket is not None and self.socket.write(body)

    def refused(self, items: list[Item]) -> None:
        """The socket did not take the held items: they go in front of the live buffer (if
        the feed is still joined; else its consumer brings them again) for the loop to write."""
        live = self.feed.live
        if live is not None:
            live[:0] = items
            self.feed.wake()

    def written(self, items: list[Item]) -> None:
        """The held `items` are the transport's (`gateway/feed/turn.py`): the bookkeeping of
        a write of the loop — position, lazy consumer move (its deadline wakes the loop),
        keep-alive clock, correlation ids."""
        now, acks, last = self.loop.time(), self.acks, items[-1]
        first = not acks.count
        acks.note(last, len(items), now, per_item(items) if items[1:] else None)  # never due
        if first:
            self.feed.wake_by(acks.deadline())
        self.order.after, self.last_write = last.seq, now
        _trace(acks.trace, items)

    async def take(self, now: float) -> _Step | None:
        """What arrived: the tail's items (a joined feed) or the consumer's deliveries that
        are new to the client; None for a hole in the delivery sequence."""
        feed = self.feed
        if feed.live is not None:
            await self._touch(now)
            items = feed.take_live()
            lag = len(feed.live)
            if items:
                self.order.after = items[-1].seq
                items = _live(items, lag, self.ctl.format == "datastar", self.acks.trace)
            return _Step(items, lag, [], live=True)
        taken = feed.take(self.ctl.capacity)
        msgs = self.order.admit(taken) if taken else []
        if msgs is None:
            log.warning("sse_delivery_gap", client_id=self.session.client_id, consumer=feed.name)
            return None
        if taken and not msgs:  # only redeliveries: the client has them, ack again
            await feed.ack(taken[-1].reply)
        # behind: still in the stream after the last delivery, plus held in the gateway
        lag = ack_position(taken[-1].reply).pending + len(feed.buffer) if taken else 0
        return _Step(_items(msgs, self.acks.trace, lag), lag, taken, live=False)

    async def _touch(self, now: float) -> None:
        """Keep a joined feed's consumer alive, moved to what was written first."""
        if now >= self.touched + self.touch_every_s:
            if self.acks.count:  # the consumer where the client is: the touch finds nothing
                await self.acks.flush()
            await self.feed.touch()
            self.touched = now

    async def shape(self, step: _Step, now: float) -> tuple[bytes, tuple[Item, int] | None]:
        """The bytes for the client (windows, format, overflow policy) and, when every one
        of them is a delivery, the last item and count to acknowledge once written."""
        ctl, items = self.ctl, step.items
        if items:
            metrics.client_lag.observe(step.lag)
        skip = Skip(ctl.policy) if overflowing(ctl.policy, step.lag, ctl.capacity) else None
        groups: list[list[Item]] = []
        if skip is not None and ctl.policy is Policy.DROP_OLDEST:
            skip.take(items)
            groups, items = self.pipeline.flush(), []
        groups += self.pipeline.push(items, now)
        if skip is not None and ctl.policy is Policy.DROP_NEWEST:
            groups += self.pipeline.flush()  # held back by a window: still owed
        if not self.renderer.batched or self.renderer.datastar:  # a frame per item: the trail's
            groups = [[i] for g in groups for i in g]  # resolution (gateway/feed/trail.py)
        chunks = [self.renderer.group(g) for g in groups]
        if skip is not None:
            metrics.lags.inc()
            await _drain(self.session, skip, step.taken[-1])
            self.order.skipped(skip.last)
            kept = skip.kept()
            chunks.append(skip.notice() + (self.renderer.group(kept) if kept else b""))
        if groups and skip is None:  # every byte is a delivery: placed, acked once written
            frames = per_group(groups, chunks)
            return self.acks.expect(frames), (groups[-1][-1], frames[-1][1])
        return b"".join(chunks), None

    def wrote(self) -> None:
        """Bytes went to the socket: the keep-alive counts from now."""
        self.last_write = self.loop.time()

    def rejoin_tail(self) -> None:
        """A pulling feed that caught up with the stream continues from the tail."""
        feed, tail = self.feed, self.feed.tail
        if feed.drained and tail is not None and feed.live is None and feed.idle():
            feed.drained = False  # a join that fails waits for the next catching up
            if tail.join(feed, feed.filters, self.order.after):
                self.touched = -INF

    def finish(self) -> bytes:
        """The loop ended: what the windows still hold, as bytes."""
        if self.feed.gone:
            log.warning("sse_feed_gone", client_id=self.session.client_id, reason=self.feed.gone)
        self._rest = self.pipeline.flush()
        return b"".join(self.renderer.group(g) for g in self._rest)

    async def written_rest(self) -> None:
        """The bytes of `finish` went to the socket."""
        await self.acks.written(self._rest[-1][-1], self.ctl.capacity)


def _live(items: list[Item], backlog: int, datastar: bool, trace: set[str]) -> list[Item]:
    """The tail's shared items for this client: its `pending` (what comes after each for
    it) only matters to the datastar `behind` signal, so only then are they copied."""
    _trace(trace, items)
    if not datastar:
        return items
    last = len(items) - 1
    return [i._replace(pending=backlog + last - n) for n, i in enumerate(items)]


def _trace(trace: set[str], items: list[Item]) -> None:
    """Up to 100 correlation ids of written `items` for the next `sse_delivered` log."""
    if len(trace) < 100:
        trace.update(i.event.metadata.correlation_id for i in items[:100] if i.event is not None)


async def _drain(session: Session, skip: Skip, last: Msg) -> None:
    """Pass over the backlog (acking it) until the consumer has nothing more pending."""
    feed, ctl = session.feed, session.controls
    await feed.ack(last.reply)
    pending = ack_position(last.reply).pending
    idle_until = time.monotonic() + 5.0
    while (pending > 0 or feed.buffer) and not session.closing.is_set():
        if time.monotonic() > idle_until:
            break
        await feed.ask(ctl.capacity, 1.0)
        await feed.wait(1.0)
        feed.expired = False
        msgs = feed.take(ctl.capacity)
        if msgs:
            skip.take(_items(msgs))
            await feed.ack(msgs[-1].reply)
            pending, idle_until = ack_position(msgs[-1].reply).pending, time.monotonic() + 5.0
    metrics.drops.labels(ctl.policy.value).inc(skip.dropped())
