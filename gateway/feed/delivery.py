"""What one client has been written (pure bookkeeping around a feed's consumer): each
event once and in order (`DeliveryOrder`), and the writes acknowledged lazily
(`LazyAcks`). Used by the stream loop (`gateway/feed/stream.py`)."""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.msg import Msg

from common.jetstream import ack_position
from gateway.feed.client import ClientFeed
from gateway.feed.direct import Outgoing
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
    see up to that much again; a closing feed moves its consumer at once.

    The consumer is only ever moved past bytes that left the process (attack15 F3's invariant):
    "written" means handed to the connection's transport, whose user-space buffer dies with the
    process, while what the kernel holds is still sent. So a move goes as far as the last write
    after which the transport held nothing (`outgoing`, `gateway/feed/direct.py`), and waits
    (until the next deadline) while it holds bytes of a client that does not read; an ending
    feed waits up to `END_WAIT_S` for them. Unknown servers (`outgoing` None) move as before."""

    EVERY_S = 1.0
    LIVE_EVERY_S = 5.0
    END_WAIT_S = 2.0  # an ending feed waits this long for its last bytes to leave (seconds)
    END_POLL_S = 0.02

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
        self.moved = after  # the consumer was moved past this (every byte up to it left)
        self.outgoing: Outgoing | None = None  # the response's transport, once started
        self._left: tuple[int, str] | None = None  # the last write known to have left, unmoved

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
        self._settle()
        return bool(self.subject) and self.count >= self.threshold and self._left is not None

    def _settle(self) -> None:
        """Everything written so far left the process when the transport holds nothing now."""
        outgoing = self.outgoing
        if self.count and (outgoing is None or outgoing.held() == 0):
            self._left = (self.seq, self.subject)

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
        self.subject, self.count, self._left = "", 0, None

    async def finish(self) -> None:
        """The feed ended: wait up to `END_WAIT_S` for its last bytes to leave the process, move
        the consumer past what did, then write the floor of a named feed (`floors.py`)."""
        deadline = self.loop.time() + self.END_WAIT_S
        while self.count and self.outgoing is not None and self.loop.time() < deadline:
            held = self.outgoing.held()
            if held is None or held == 0:  # gone (what it held is lost), or all of it left
                break
            await asyncio.sleep(self.END_POLL_S)  # the transport has no drain event to wait on
        if self.count:
            await self.flush()
        if self.feed.floor is not None:
            await self.feed.floor.ended(self.moved)

    async def flush(self) -> None:
        """Ack (or reset) past the last write that left the process, and log what was delivered
        since the last move with its correlation ids; nothing left yet: again at the next
        deadline."""
        self._settle()
        left, self._left = self._left, None
        if left is None:
            self.since = self.loop.time()
            return
        seq, subject = left
        count = self.count
        if left == (self.seq, self.subject):
            self.subject, self.count = "", 0
        else:  # later writes are still in the transport: they move the consumer later
            self.since = self.loop.time()
        if subject:
            await self.feed.ack(subject)
        else:
            await self.feed.reset(seq + 1)
        self.moved = seq
        if self.feed.floor is not None:
            self.feed.floor.moved(seq)
        log.info("sse_delivered", client_id=self.client_id, events=count, last=seq,
                 correlation_ids=sorted(self.trace - {""}))  # fmt: skip
        self.trace.clear()
