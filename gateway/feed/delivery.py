"""What one client has been written (pure bookkeeping around a feed's consumer): each
event once and in order (`DeliveryOrder`), and the writes acknowledged lazily
(`LazyAcks`). Used by the stream loop (`gateway/feed/stream.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from nats.aio.msg import Msg

from common.jetstream import ack_position
from gateway.feed.client import ClientFeed
from gateway.feed.direct import Outgoing
from gateway.feed.trail import Frame
from gateway.feed.window import Item

INF = float("inf")
# a write's frames: (the last item in the frame, items through it in the write, its bytes)
Frames = Sequence[tuple[Item, int, bytes]]
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
    Each feed waits its own share of those intervals (`_phase`, half to all of it): feeds
    whose writes began together (10,000 clients, one event to all) moved together, 10,000
    resets at once that stalled the gateway for ~1 s (issue 15 latency, session 8).
    A gateway that dies meanwhile only makes a returning client without `Last-Event-ID`
    see up to that much again; an ending feed moves its consumer before its last frame.

    The consumer is only ever moved past bytes the client's host acknowledged (attack15r F1):
    "written" means handed to the connection's transport; bytes then sit in its user-space
    buffer and in the kernel's send queue (up to MBs for a client that reads slowly), and
    are lost when the client's connection ends. When a move is due, the feed samples how far
    its bytes got (`Outgoing.progress`, two syscalls): with nothing in flight it moves past
    every write; else it keeps a marker (the last write, the end offset of its bytes) and
    moves there once the peer's TCP acknowledged that offset (checked `CHECK_S` later, then
    at each deadline). An ending feed waits up to `END_WAIT_S` for its bytes to be
    acknowledged, then moves past what was. Without TCP counters (`progress` reports 0
    acknowledged: not Linux, not TCP) a move goes past what left the process (the transport
    held nothing), as before; unknown servers (`outgoing` None) move past every write. A
    pulling feed is acked ahead of that for its flow (`_unblock`) and reset back as it ends."""

    EVERY_S = 1.0
    LIVE_EVERY_S = 5.0
    CHECK_S = 0.05  # a marker is checked this soon after it was set (seconds)
    END_WAIT_S = 2.0  # an ending feed waits this long for its last bytes (seconds)
    CUT_WAIT_S = 1.0  # ... and 1 s once cut at a stop (process.STOP_WAIT_S leaves 1 s to move)
    END_POLL_S = 0.02

    def __init__(
        self,
        feed: ClientFeed,
        capacity: int,
        loop: asyncio.AbstractEventLoop,
        client_id: str,
        after: int,
        flow: bool = False,
    ) -> None:
        self.feed, self.threshold, self.loop = feed, max(1, capacity // 2), loop
        self.flow = flow  # `unbounded`: acked as written (its flow), reset back as it ends
        self.subject, self.seq, self.count, self.since = "", after, 0, 0.0
        self.client_id, self.noted = client_id, 0  # items ever written
        self._trace: set[str] | None = None  # only while there is something to log (`trace`)
        self.moved = after  # the consumer was moved past this (the client's host has it)
        self.outgoing: Outgoing | None = None  # the response's transport, once started
        # the last write in flight when sampled: (seq, subject, end offset of its bytes, count)
        self._mark: tuple[int, str, int, int] | None = None
        self._acked = 0  # the peer's acknowledged bytes when last sampled
        self._check = INF  # when the marker is checked again (event-loop seconds)
        self._spill = False  # the transport held bytes after the last write (a loss drops them)
        self.ended = False
        self.ahead = after  # the consumer was moved this far without confirmation (`clear`)

    @property
    def trace(self) -> set[str]:
        """Correlation ids written since the last `sse_delivered` log (the caller keeps it to 100);
        a set only once there are any (an idle feed holds none)."""
        if self._trace is None:
            self._trace = set()
        return self._trace

    def expect(self, frames: Frames) -> bytes:
        """`frames` as one body for the socket's awaited path; the trail places them as the
        transport takes the body (`Outgoing.expect`): a client that leaves while the send
        waits for its drain may have part of it. Then `written(..., placed=True)`."""
        body = b"".join([part for _, _, part in frames])
        if self.outgoing is not None and not self.outgoing.gone:
            self.outgoing.expect(len(body), _ends(frames, self.noted))
        return body

    async def written(self, last: Item, count: int, placed: bool = False) -> None:
        """`count` items up to `last` went to the socket (`placed`: by `expect`)."""
        if self.note(last, count, self.loop.time(), placed=placed):
            await self.flush()

    def note(
        self, last: Item, count: int, now: float, frames: Frames | None = None, placed: bool = False
    ) -> bool:
        """`count` items up to `last` went to the socket at `now` (event-loop seconds), never
        awaiting, as one write of `frames` ((last item of a frame, items through it in the
        write, the frame's bytes), in order, the whole write; None: one frame; `placed`: the
        trail has them, `expect`); whether an ack is due at once (half the capacity of
        consumer deliveries, past the marker that waits for the peer)."""
        if self.outgoing is not None and self.outgoing.gone:  # dropped by the server
            return False
        if not self.count:
            self.since = now
        self._spill = bool(self.outgoing is not None and self.outgoing.held())
        self.subject, self.seq, self.count = last.ack, last.seq, self.count + count
        self.noted += count
        if self.outgoing is not None and not placed:  # where its frames end (V4, V7b-1)
            self.outgoing.track(_ends(frames, self.noted - count) if frames else
                                [(0, last.seq, last.ack, self.noted)])  # fmt: skip
        return bool(self.subject) and self.count - self._marked() >= self.threshold

    def _marked(self) -> int:
        """How many of the unacknowledged writes the marker covers."""
        return 0 if self._mark is None else self._mark[3]

    def deadline(self) -> float:
        """When (event-loop seconds) the unacknowledged writes are due; inf for none."""
        if not self.count:
            return INF
        every = self.EVERY_S if self.subject else self.LIVE_EVERY_S
        return min(self._check, self.since + every * _phase(self.client_id))

    def due(self) -> bool:
        """Whether the deadline has passed."""
        return self.loop.time() >= self.deadline()

    def clear(self) -> None:
        """Forget what is unacknowledged: the consumer was moved past every write (`seq`) to
        pull from there (it left the tail); `finish` moves it back to what was confirmed."""
        self.ahead = max(self.ahead, self.seq)
        self.subject, self.count, self._mark, self._check = "", 0, None, INF

    def _in_flight(self) -> int | None:
        """Bytes written, not yet acknowledged by the peer (remembering what it acknowledged);
        None when not known (the connection was lost unsampled); 0 without a known transport."""
        if self.outgoing is None:
            return 0
        progress = self.outgoing.progress()
        if progress is None:
            return None
        self._acked = progress[0]
        return progress[1]

    def _confirmed(self) -> tuple[int, str] | None:
        """The last write the client's host has (to move past), sampling a marker for the
        writes after it; None: nothing new is confirmed. Moves past a marker take one deadline
        (the marker is set at one, confirmed at the next), except the first marker of a burst
        (checked `CHECK_S` later) and a pulling feed whose consumer waits on the move."""
        flight = self._in_flight()
        mark, now = self._mark, self.loop.time()
        out = self.outgoing
        if flight == 0 and (out is None or not out.gone or out.exact or not self._spill):
            # (else bytes its transport dropped may be missing from the count: only a marker
            # set while the connection was open is trusted)
            self._mark, self._check = None, INF
            if out is not None:
                out.settle()
            return self.seq, self.subject
        confirmed = None
        part = None if out is None else out.reached(self._acked)
        if part is not None and part[0] > self.moved:  # its host has this write (verify6 V4)
            # (frames placed by `expect` whose send never returned are past `noted`)
            confirmed, left = (part[0], part[1]), max(0, min(self.count, self.noted - part[2]))
            done, self.count = self.count - left, left
            if mark is not None:  # the marker now covers `done` fewer writes, or is passed
                mark = None if mark[3] <= done else (*mark[:3], mark[3] - done)
        elif mark is not None and self._acked >= mark[2]:
            confirmed, mark = (mark[0], mark[1]), None
            self.count -= self._marked()
        if flight is not None and mark is None and confirmed != (self.seq, self.subject):
            mark = (self.seq, self.subject, self._acked + flight, self.count)
            self._check = INF if confirmed else now + self.CHECK_S
        elif mark is not None:  # not acknowledged yet: soon when the consumer waits on it
            waiting = bool(self.subject) and self.count - mark[3] >= self.threshold
            self._check = now + self.CHECK_S if waiting else INF
        self._mark = mark
        return confirmed

    async def finish(self, last: bool = True) -> None:
        """The feed ended: wait up to `END_WAIT_S` for the peer to acknowledge its last bytes,
        move the consumer past what it did, then write the floor of a named feed
        (`floors.py`). Once: before the feed's last frame when the connection is still open,
        and `last` after the response (the connection given back): then a newer connection
        waiting to take over goes on (`gateway/feed/takeover.py`). The first call counts only
        once it completed: the connection lost while it waits (a cut at a stop) cancels it,
        and the call after the response makes the move from the loss's sample (V8b-1)."""
        try:
            if not self.ended:
                await self._last_move()
                self.ended = True
        finally:
            if last:
                if self.outgoing is not None:
                    self.outgoing.release()
                if self.feed.handover is not None:
                    self.feed.handover.ended()

    async def _last_move(self) -> None:
        """`finish`'s work: the bounded wait for acknowledgements, the move, the floor."""
        out = self.outgoing  # gone: cut at a stop (the kernel may still send), or lost
        wait = self.CUT_WAIT_S if out is not None and out.gone else self.END_WAIT_S
        deadline = self.loop.time() + wait
        while self.count and self.loop.time() < deadline:
            flight = self._in_flight()
            if not flight or out is None or (out.gone and not out.draining()):
                break  # all acknowledged, or gone (what was not is lost)
            await asyncio.sleep(self.END_POLL_S)  # the kernel has no ack event to wait on
        if self.count:
            await self.flush()
        if self.ahead > self.moved:  # back to what the client's host has: at least once
            await self.feed.reset(self.moved + 1)
        if self.feed.floor is not None:
            await self.feed.floor.ended(self.moved)

    async def left_process(self, stop: Callable[[], bool]) -> None:
        """Wait until every write left the process (its transport holds none of it: after a
        kill -9 the kernel still delivers what it took), making the moves that fall due
        meanwhile; at once without a known transport, once it is gone, or when `stop()`.
        Before a feed that fell behind moves its consumer to its last write (verify9 V9-2:
        up to the transport's 64 KiB of frames were lost by a kill -9 while it waited). Not
        an `unbounded` feed (`flow`): it keeps pulling to its cap (verify6 V2)."""
        out = None if self.flow else self.outgoing
        while out is not None and out.held() and not stop():
            if self.due():
                await self.flush()
            await asyncio.sleep(self.END_POLL_S)

    async def _unblock(self) -> None:
        """A pulling feed's consumer is acked past what left the process (the transport holds
        nothing) while the client's host has not acknowledged it yet: its flow must not wait
        for the client's delayed TCP acks (up to 40 ms each: 25 events/s at capacity 1). An
        `unbounded` feed (`flow`) is acked past what it wrote, held or not: it keeps pulling up
        to its cap while its client does not read (verify6 V2). The cursor of record stays
        `moved`: `finish` resets the consumer back to it (`ahead`)."""
        out = self.outgoing
        left = self.flow or (out is not None and out.held() == 0)
        if self.subject and self.seq > self.ahead and left:
            self.ahead = self.seq
            await self.feed.ack(self.subject)

    async def flush(self) -> None:
        """Ack (or reset) past the last write the client's host acknowledged, and log what was
        delivered since the last move with its correlation ids; nothing confirmed yet: again
        at the next deadline."""
        count = self.count
        confirmed = self._confirmed() if count else None
        if confirmed is None:
            self.since = self.loop.time()
            await self._unblock()
            return
        seq, subject = confirmed
        if confirmed == (self.seq, self.subject):
            self.subject, self.count = "", 0
        else:  # later writes are still in flight: they move the consumer later
            self.since, count = self.loop.time(), count - self.count
        if seq <= self.ahead:  # the consumer is there already (`_unblock`, `clear`)
            pass
        elif subject:
            await self.feed.ack(subject)
        else:
            await self.feed.reset(seq + 1)
        self.moved, self.ahead = max(self.moved, seq), max(self.ahead, seq)
        if self.count:  # later writes in flight
            await self._unblock()
        if self.feed.floor is not None:
            self.feed.floor.moved(seq)
        log.info("sse_delivered", client_id=self.client_id, events=count, last=seq,
                 correlation_ids=sorted((self._trace or set()) - {""}))  # fmt: skip
        self._trace = None


def _phase(client_id: str) -> float:
    """The share (0.5 to 1) of a move interval this feed waits: fixed per client id (its
    hash), spread evenly over the feeds of a process."""
    return 0.5 + (hash(client_id) & 1023) / 2046


def _ends(frames: Frames, before: int) -> list[Frame]:
    """`frames` of one write as `Outgoing.track` takes them; `before`: items noted before it."""
    after = sum(len(part) for _, _, part in frames)
    out = []
    for item, through, part in frames:
        after -= len(part)
        out.append((after, item.seq, item.ack, before + through))
    return out


def per_item(items: list[Item], render: Callable[[Item], bytes] | None = None) -> Frames:
    """The frames of a write of one frame per item: its `wire`, else `render(item)`."""
    if render is None:
        return [(i, n, i.wire) for n, i in enumerate(items, 1)]
    return [(i, n, i.wire or render(i)) for n, i in enumerate(items, 1)]


def per_group(groups: list[list[Item]], parts: list[bytes]) -> Frames:
    """The frames of a write of one frame per group of items (`parts`), for `note`."""
    out, through = list[tuple[Item, int, bytes]](), 0
    for group, part in zip(groups, parts, strict=True):
        through += len(group)
        out.append((group[-1], through, part))
    return out
