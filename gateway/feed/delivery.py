"""What one client has been written (pure bookkeeping around a feed's consumer): each
event once and in order (`DeliveryOrder`), and the writes acknowledged lazily
(`LazyAcks`). Used by the stream loop (`gateway/feed/stream.py`)."""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.msg import Msg

from common.jetstream import ack_position
from gateway.feed.client import ClientFeed
from gateway.feed.window import Item

INF = float("inf")
log = structlog.get_logger()


class DeliveryOrder:
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
        first, last = (
            ack_position(msgs[0].reply).consumer_seq,
            ack_position(msgs[-1].reply).consumer_seq,
        )
        if last - first != len(msgs) - 1 or self.delivered not in (None, first - 1):
            return None
        self.delivered = last
        fresh = [m for m in msgs if ack_position(m.reply).stream_seq > self.after]
        if fresh:
            self.after = ack_position(fresh[-1].reply).stream_seq
        return fresh

    def skipped(self, last: int) -> None:
        """A drain consumed deliveries up to stream sequence `last`."""
        self.delivered, self.after = None, max(self.after, last)


class LazyAcks:
    """What was written, acknowledged lazily. A delivery of the consumer is acked (AckAll)
    once half the capacity is unacknowledged (the consumer's `max_ack_pending` is the
    capacity) or `EVERY_S` seconds after the first unacknowledged write; an item of the live
    tail moves the consumer past it (`reset`) `LIVE_EVERY_S` seconds after the first unmoved
    write (nothing waits on it, and each reset costs nats-server a consumer-info answer).
    A gateway that dies meanwhile only makes a returning client without `Last-Event-ID`
    see up to that much again; a closing feed moves its consumer at once."""

    EVERY_S = 1.0
    LIVE_EVERY_S = 5.0

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
        if self.note(last, count, self.loop.time()):
            await self.flush()

    def note(self, last: Item, count: int, now: float) -> bool:
        """`count` items up to `last` went to the socket at `now` (event-loop seconds), never
        awaiting; whether an ack is due at once (half the capacity of consumer deliveries)."""
        if not self.count:
            self.since = now
        self.subject, self.seq, self.count = last.ack, last.seq, self.count + count
        return bool(self.subject) and self.count >= self.threshold

    def deadline(self) -> float:
        """When (event-loop seconds) the unacknowledged writes are due; inf for none."""
        if not self.count:
            return INF
        return self.since + (self.EVERY_S if self.subject else self.LIVE_EVERY_S)

    def due(self) -> bool:
        """Whether the deadline has passed."""
        return self.loop.time() >= self.deadline()

    def clear(self) -> None:
        """Forget what is unacknowledged: a reset of the consumer covers it."""
        self.subject, self.count = "", 0

    async def finish(self) -> None:
        """The feed ended: move the consumer past what is unacknowledged, then write the floor of a
        named feed (gateway/feed/floors.py)."""
        if self.count:
            await self.flush()
        if self.feed.floor is not None:
            await self.feed.floor.ended(self.seq)

    async def flush(self) -> None:
        """Ack, and log what was delivered since the last ack with its correlation ids."""
        subject, count, self.subject, self.count = self.subject, self.count, "", 0
        if subject:
            await self.feed.ack(subject)
        else:
            await self.feed.reset(self.seq + 1)
        if self.feed.floor is not None:
            self.feed.floor.moved(self.seq)
        log.info("sse_delivered", client_id=self.client_id, events=count, last=self.seq,
                 correlation_ids=sorted(self.trace - {""}))  # fmt: skip
        self.trace.clear()
