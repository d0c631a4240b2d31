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
from gateway import metrics, reading
from gateway.controls import Controls
from gateway.feed import ClientFeed
from gateway.pipeline import Pipeline, Writer
from gateway.policy import Policy, Skip, overflowing, unbounded_notice
from gateway.window import Item
from gateway.wire import comment, retry

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
    acks = _Acks(feed, ctl.capacity, loop, session.client_id)
    order = _Order(session.after, feed.delivered)
    try:
        yield retry(settings.sse_retry_ms) + hello
        last_write = loop.time()
        while not session.closing.is_set() and not feed.gone:
            if feed.overflowed:
                yield unbounded_notice(
                    settings.sse_unbounded_cap, feed.overflowed, feed.overflow_reason
                )
                return
            if feed.should_ask():
                await feed.ask(ctl.capacity, keepalive)
            wake_at = min(last_write + keepalive, pipeline.deadline() or INF, acks.deadline())
            await feed.wait(max(0.0, wake_at - loop.time()))
            if acks.due():
                await acks.flush()
            feed.expired = False
            taken = feed.take(ctl.capacity)
            msgs = order.admit(taken) if taken else []
            if msgs is None:
                log.warning("sse_delivery_gap", client_id=session.client_id, consumer=feed.name)
                break
            if taken and not msgs:  # only redeliveries: the client has them, ack again
                await feed.ack(taken[-1].reply)
            now = loop.time()
            # behind: still in the stream after the last delivery, plus held in the gateway
            lag = _position(taken[-1])[2] + len(feed.buffer) if taken else 0
            items = _items(msgs, acks.trace, lag)
            if msgs:
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
                    await acks.written(groups[-1][-1].ack, sum(map(len, groups)))
                last_write = loop.time()
            elif now >= last_write + keepalive:
                yield comment("keep-alive")
                last_write = now
        if feed.gone:
            log.warning("sse_feed_gone", client_id=session.client_id, reason=feed.gone)
        rest = pipeline.flush()
        if rest:
            yield b"".join(writer.group(g) for g in rest)
            await acks.written(rest[-1][-1].ack, ctl.capacity)
        # Shutting down: tell the client to come back soon, spread out so replicas are not stormed.
        yield retry(int(settings.sse_retry_ms * random.uniform(0.5, 1.5)))
    except Exception:  # a bug must not leave a client without a way back: it resumes by id
        log.exception("sse_stream_failed", client_id=session.client_id, consumer=feed.name)
        yield retry(int(settings.sse_retry_ms * random.uniform(0.5, 1.5)))
    finally:
        session.release()
        if acks.subject:  # those bytes were written: a returning client continues after them
            # not awaited here: a cancelled response (the client left) may not await again
            task = asyncio.get_running_loop().create_task(acks.flush())
            _last_acks.add(task)
            task.add_done_callback(_last_acks.discard)


class _Acks:
    """AckAll, sent lazily: once half the capacity is unacknowledged, or `EVERY` seconds
    after the first unacknowledged write. Saves an ack message per write (and the server's
    work on it) under load; a gateway that dies meanwhile only makes a returning client
    without `Last-Event-ID` see up to that much again."""

    EVERY = 1.0

    def __init__(
        self, feed: ClientFeed, capacity: int, loop: asyncio.AbstractEventLoop, client_id: str
    ) -> None:
        self.feed, self.threshold, self.loop = feed, max(1, capacity // 2), loop
        self.subject, self.count, self.since = "", 0, 0.0
        self.client_id, self.trace, self.sent = client_id, set[str](), 0

    async def written(self, subject: str, count: int) -> None:
        if not self.subject:
            self.since = self.loop.time()
        self.subject, self.count = subject, self.count + count
        if self.count >= self.threshold:
            await self.flush()

    def deadline(self) -> float:
        return self.since + self.EVERY if self.subject else INF

    def due(self) -> bool:
        return bool(self.subject) and self.loop.time() >= self.since + self.EVERY

    async def flush(self) -> None:
        """Ack, and log what was delivered since the last ack with its correlation ids."""
        subject, count, self.subject, self.count = self.subject, self.count, "", 0
        await self.feed.ack(subject)
        log.info("sse_delivered", client_id=self.client_id, events=count,
                 last=int(subject.split(".")[5]) if subject.count(".") == 8 else None,
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
