"""The loop behind one SSE response: pull, apply the client's controls, write, ack.

Deliveries are written in as few writes as possible (everything that arrived together is
one write), and acked after the write returned: the socket's drain paces the consumer.
Everything that is not written is accounted for: superseded by a later event of the same
aggregate (debounce, drop-oldest) or dropped with a `lag` notice (the dropping policies).
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg

from common.settings import GatewaySettings
from gateway import metrics
from gateway.feed import reading
from gateway.feed.client import ClientFeed
from gateway.feed.controls import Controls
from gateway.feed.pipeline import Pipeline, Writer
from gateway.feed.policy import Policy, Skip, overflowing, unbounded_notice
from gateway.feed.window import Item
from gateway.feed.wire import comment, retry

INF = float("inf")
log = structlog.get_logger()
_last_acks: set[asyncio.Task[None]] = set()


@dataclass
class Session:
    feed: ClientFeed
    controls: Controls
    settings: GatewaySettings
    closing: asyncio.Event
    client_id: str
    after: int = 0  # the stream sequence the client already has everything up to
    released: bool = False

    def release(self) -> None:
        """Give back the feed and the connection slot, once."""
        if not self.released:
            self.released = True
            self.feed.close()
            self.feed.inbox.release(self.client_id)
            log.info("sse_closed", client_id=self.client_id, consumer=self.feed.name)


def stream(session: Session, hello: bytes) -> AsyncIterator[bytes]:
    """The response body; a body never started (the client left at once) still releases."""
    body = events(session, hello)
    weakref.finalize(body, session.release)
    return body


def _position(msg: Msg) -> tuple[int, int, int]:
    """(stream sequence, delivery sequence, events still pending) from the ack subject."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[6]), int(tokens[8])
    meta = msg.metadata
    return meta.sequence.stream, meta.sequence.consumer, meta.num_pending


def _items(msgs: list[Msg], trace: set[str] | None = None, backlog: int = 0) -> list[Item]:
    """Items of `msgs` (undecodable ones marked skipped); each one's `pending` counts what
    comes after it for this client: the rest of `msgs`, plus `backlog` (held in the
    gateway or waiting in the stream)."""
    items = []
    for index, m in enumerate(msgs):
        behind = backlog + len(msgs) - 1 - index
        one = reading.item(_position(m)[0], m.subject, m.data, m.reply, behind)
        if trace is not None and len(trace) < 100 and one.event is not None:
            trace.add(one.event.metadata.correlation_id)
        items.append(one)
    return items


class _Order:
    """Each event once and in order, whatever NATS does underneath.

    A redelivery of an event the client already has (its ack was lost when a NATS node
    went away) is dropped; a hole in the consumer's delivery sequence (deliveries went to a
    pull request lost in a reconnect, and AckAll would skip them) ends the stream, so the
    client resumes from its `Last-Event-ID` on a fresh consumer.
    """

    def __init__(self, after: int, delivered: int | None = None) -> None:
        self.after = after
        self.delivered = delivered  # None: not known (after a drain)

    def admit(self, msgs: list[Msg]) -> list[Msg] | None:
        """The deliveries that are new to the client; None for a hole."""
        first, last = _position(msgs[0])[1], _position(msgs[-1])[1]
        if last - first != len(msgs) - 1 or self.delivered not in (None, first - 1):
            return None
        self.delivered = last
        fresh = [m for m in msgs if _position(m)[0] > self.after]
        if fresh:
            self.after = _position(fresh[-1])[0]
        return fresh

    def skipped(self, last: int) -> None:
        """A drain consumed deliveries up to stream sequence `last`."""
        self.delivered, self.after = None, max(self.after, last)


async def events(session: Session, hello: bytes) -> AsyncIterator[bytes]:
    feed, ctl, settings = session.feed, session.controls, session.settings
    keepalive = settings.sse_keepalive_s
    loop = asyncio.get_running_loop()
    writer, pipeline = Writer(ctl), Pipeline(ctl)
    if ctl.policy is Policy.UNBOUNDED:
        feed.cap = settings.sse_unbounded_cap
    acks = _Acks(feed, ctl.capacity, loop, session.client_id, session.after)
    order = _Order(session.after, feed.delivered)
    tail = feed.tail
    touch_every = min(keepalive, settings.sse_inactive_s / 3)
    plain = ctl.format == "json" and ctl.debounce_s is None and ctl.batch_s is None
    try:
        yield retry(settings.sse_retry_ms) + hello
        last_write, touched = loop.time(), -INF  # a joined feed touches its consumer first
        if tail is not None:
            tail.join(feed, feed.filters, order.after)
        while not session.closing.is_set() and not feed.gone:
            if feed.overflowed:
                yield unbounded_notice(
                    settings.sse_unbounded_cap, feed.overflowed, feed.overflow_reason
                )
                return
            if feed.fell:  # left the tail: pull the consumer from the last event written
                metrics.tail_left.inc()
                log.info("sse_tail_left", client_id=session.client_id, reason=feed.fell)
                acks.clear()
                feed.gone = await feed.resume_pull(acks.seq + 1)
                order.delivered = 0
                continue
            live = feed.live is not None
            if not live and feed.should_ask():
                await feed.ask(ctl.capacity, keepalive, no_wait=bool(tail and tail.ready))
            wake_at = min(last_write + keepalive, pipeline.deadline() or INF, acks.deadline())
            if live:
                wake_at = min(wake_at, touched + touch_every)
            await feed.wait(max(0.0, wake_at - loop.time()))
            if acks.due():
                await acks.flush()
            feed.expired = False
            now = loop.time()
            if feed.live is not None:
                if now >= touched + touch_every:
                    if acks.count:  # the consumer where the client is: the touch finds nothing
                        await acks.flush()
                    await feed.touch()
                    touched = now
                taken: list[Msg] = []
                items = feed.take_live()
                lag = len(feed.live)
                if items:
                    order.after = items[-1].seq
                    items = _live(items, lag, ctl.format == "datastar", acks.trace)
                    if plain:  # the frames the tail rendered, as they are: one write
                        metrics.client_lag.observe(lag)
                        started = time.perf_counter()
                        yield b"".join([i.wire or writer.one(i) for i in items])
                        metrics.emit_seconds.observe(time.perf_counter() - started)
                        await acks.written(items[-1], len(items))
                        last_write = loop.time()
                        continue
            else:
                taken = feed.take(ctl.capacity)
                msgs = order.admit(taken) if taken else []
                if msgs is None:
                    log.warning("sse_delivery_gap", client_id=session.client_id, consumer=feed.name)
                    break
                if taken and not msgs:  # only redeliveries: the client has them, ack again
                    await feed.ack(taken[-1].reply)
                # behind: still in the stream after the last delivery, plus held in the gateway
                lag = _position(taken[-1])[2] + len(feed.buffer) if taken else 0
                items = _items(msgs, acks.trace, lag)
            if items:
                metrics.client_lag.observe(lag)
            skip = Skip(ctl.policy) if overflowing(ctl.policy, lag, ctl.capacity) else None
            groups: list[list[Item]] = []
            if skip is not None and ctl.policy is Policy.DROP_OLDEST:
                skip.take(items)
                groups, items = pipeline.flush(), []
            groups += pipeline.push(items, now)
            if skip is not None and ctl.policy is Policy.DROP_NEWEST:
                groups += pipeline.flush()  # held back by a window: still owed
            chunks = [writer.group(g) for g in groups]
            if skip is not None:
                metrics.lags.inc()
                await _drain(session, skip, taken[-1])
                order.skipped(skip.last)
                chunks.append(skip.notice() + (writer.group(skip.kept()) if skip.kept() else b""))
            if chunks:
                started = time.perf_counter()
                yield b"".join(chunks)
                metrics.emit_seconds.observe(time.perf_counter() - started)
                if groups and skip is None:  # every byte above went to the socket
                    await acks.written(groups[-1][-1], sum(map(len, groups)))
                last_write = loop.time()
            elif now >= last_write + keepalive:
                yield comment("keep-alive")
                last_write = now
            if feed.drained and tail is not None and feed.live is None:
                feed.drained = False  # caught up with the stream: continue from the tail
                if feed.idle() and tail.join(feed, feed.filters, order.after):
                    touched = -INF
        if feed.gone:
            log.warning("sse_feed_gone", client_id=session.client_id, reason=feed.gone)
        rest = pipeline.flush()
        if rest:
            yield b"".join(writer.group(g) for g in rest)
            await acks.written(rest[-1][-1], ctl.capacity)
        # Shutting down: tell the client to come back soon, spread out so replicas are not stormed.
        yield retry(int(settings.sse_retry_ms * random.uniform(0.5, 1.5)))
    except Exception:  # a bug must not leave a client without a way back: it resumes by id
        log.exception("sse_stream_failed", client_id=session.client_id, consumer=feed.name)
        yield retry(int(settings.sse_retry_ms * random.uniform(0.5, 1.5)))
    finally:
        session.release()
        if acks.count:  # those bytes were written: a returning client continues after them
            # not awaited here: a cancelled response (the client left) may not await again
            task = asyncio.get_running_loop().create_task(acks.flush())
            _last_acks.add(task)
            task.add_done_callback(_last_acks.discard)


def _live(items: list[Item], backlog: int, datastar: bool, trace: set[str]) -> list[Item]:
    """The tail's shared items for this client: its `pending` (what comes after each for
    it) only matters to the datastar `behind` signal, so only then are they copied."""
    if len(trace) < 100:
        trace.update(i.event.metadata.correlation_id for i in items[:100] if i.event is not None)
    if not datastar:
        return items
    last = len(items) - 1
    return [i._replace(pending=backlog + last - n) for n, i in enumerate(items)]


class _Acks:
    """What was written, acknowledged lazily. A delivery of the consumer is acked (AckAll)
    once half the capacity is unacknowledged (the consumer's `max_ack_pending` is the
    capacity) or `EVERY` seconds after the first unacknowledged write; an item of the live
    tail moves the consumer past it (`reset`) `LIVE_EVERY` seconds after the first unmoved
    write (nothing waits on it, and each reset costs nats-server a consumer-info answer).
    A gateway that dies meanwhile only makes a returning client without `Last-Event-ID`
    see up to that much again; a closing feed moves its consumer at once."""

    EVERY = 1.0
    LIVE_EVERY = 5.0

    def __init__(
        self,
        feed: ClientFeed,
        capacity: int,
        loop: asyncio.AbstractEventLoop,
        client_id: str,
        after: int,
    ) -> None:
        self.feed, self.threshold, self.loop = feed, max(1, capacity // 2), loop
        self.subject, self.seq, self.count, self.since = "", after, 0, 0.0
        self.client_id, self.trace, self.sent = client_id, set[str](), 0

    async def written(self, last: Item, count: int) -> None:
        """`count` items up to `last` went to the socket."""
        if not self.count:
            self.since = self.loop.time()
        self.subject, self.seq, self.count = last.ack, last.seq, self.count + count
        if self.subject and self.count >= self.threshold:
            await self.flush()

    def deadline(self) -> float:
        if not self.count:
            return INF
        return self.since + (self.EVERY if self.subject else self.LIVE_EVERY)

    def due(self) -> bool:
        return self.loop.time() >= self.deadline()

    def clear(self) -> None:
        """Forget what is unacknowledged: a reset of the consumer covers it."""
        self.subject, self.count = "", 0

    async def flush(self) -> None:
        """Ack, and log what was delivered since the last ack with its correlation ids."""
        subject, count, self.subject, self.count = self.subject, self.count, "", 0
        if subject:
            await self.feed.ack(subject)
        else:
            await self.feed.reset(self.seq + 1)
        log.info("sse_delivered", client_id=self.client_id, events=count, last=self.seq,
                 correlation_ids=sorted(self.trace - {""}))  # fmt: skip
        self.trace.clear()


async def _drain(session: Session, skip: Skip, last: Msg) -> None:
    """Pass over the backlog (acking it) until the consumer has nothing more pending."""
    feed, ctl = session.feed, session.controls
    await feed.ack(last.reply)
    pending = _position(last)[2]
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
            pending, idle_until = _position(msgs[-1])[2], time.monotonic() + 5.0
    metrics.drops.labels(ctl.policy.value).inc(skip.dropped())
