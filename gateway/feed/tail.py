"""The gateway's live tail: each stream message read, checked and framed once for every
caught-up SSE client of the process.

Every feed keeps its durable consumer (its cursor of record and its back-pressure path,
`gateway/feed/client.py`), but a feed that has caught up with the stream leaves it and *joins*
the tail: one ordered JetStream consumer per process over all events, whose messages are
decoded once (`gateway/feed/reading.py`) and handed, as the same `Item`, to every joined feed
whose topics match it. A joined feed moves its consumer along with what it wrote
(`$JS.API.CONSUMER.RESET`, lazily, like acks), so a client that returns by `client_id`
still continues where it was.

A feed leaves the tail (and pulls its consumer again, from the last event it wrote) when
it falls `capacity` events behind — its socket does not drain, so its backlog waits in
JetStream again — and all feeds leave when the tail sees a hole in the stream's sequence
(its consumer was lost and recreated): the tail never has to be right about a gap, only
notice it. A feed joins only at a position the tail can continue exactly: the tail keeps
the last `RING` messages, so a feed that caught up a moment ago gets the ones it missed. It
starts `RING` messages before the stream's end, so after a gateway restart its returning
clients, seconds behind, join at once (issue 15, reconnect storm).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy

from common.jetstream import ack_position, is_delivery
from gateway import metrics
from gateway.feed import reading
from gateway.feed.window import Item
from gateway.feed.wire import frame

RING = 2048  # messages kept for feeds that join a moment after they arrived (200 s at 10
# appends/s: the clients of a killed gateway join without pulling, issue 15) ...
RING_BYTES = 1 << 20  # ... and at most 1 MiB of their bodies and frames (~2.5 MB of memory)
MIN_SERVER = (2, 14)  # `$JS.API.CONSUMER.RESET` came with nats-server 2.14
log = structlog.get_logger()


class Member(Protocol):
    """A joined feed: the tail appends to `live` (None once it left) and wakes it; or, while
    its `sink` is set and `live` is empty, hands the item to `sink`, which takes it to write to
    the client's socket itself (True; at the latest when the turn ends, `Tail.after_turn`) or
    declines (False: appended and woken after all)."""

    live: list[Item] | None
    capacity: int
    sink: Callable[[Item], bool] | None

    def wake(self) -> None:
        """Items were appended to `live`."""

    def left(self, reason: str) -> None:
        """The tail let it go for `reason`: it pulls its consumer again."""


def _index(filters: Iterable[str]) -> list[tuple[str, str]]:
    """`(match, key)` per filter: `all`, `type` (`<p>.events.<type>.*`) or `exact` subject."""
    out = []
    for f in filters:
        head, _, last = f.rpartition(".")
        if f.endswith(".>"):
            out.append(("all", ""))
        elif last == "*":
            out.append(("type", head.rpartition(".")[2]))
        else:
            out.append(("exact", f))
    return out


def _missed(keys: list[tuple[str, str]], items: Iterable[Item]) -> list[Item]:
    """The `items` a joining feed of `keys` wants: sets, not `_wants` per item (a storm's
    returning clients each scan up to `RING` items: ~3 µs each that way, issue 15)."""
    if any(match == "all" for match, _ in keys):
        return list(items)
    exact = {key for match, key in keys if match == "exact"}
    types = {key for match, key in keys if match == "type"}
    wanted = []
    for item in items:
        subject = reading.subject_of(item)
        if subject in exact or (types and subject.rsplit(".", 2)[-2] in types):
            wanted.append(item)
    return wanted


class Tail:
    """The process's live tail (see the module docstring): one ordered consumer over `all_events` of
    `stream`, started with the first feed (`start`), stopped with the app (`stop`)."""

    def __init__(self, nc: Client, stream: str, all_events: str) -> None:
        self.nc, self.stream, self.all_events = nc, stream, all_events
        self.last = -1  # the stream sequence of the last message seen; -1: not started
        self.ring: deque[Item] = deque()
        self._ring_bytes = 0  # of `data` and `wire` in the ring (bounded by RING_BYTES)
        self._all: dict[Member, int] = {}  # member → the sequence it has everything up to
        self._types: dict[str, dict[Member, int]] = {}
        self._exact: dict[str, dict[Member, int]] = {}
        self._keys: dict[Member, list[tuple[str, str]]] = {}
        self._sub: Any = None
        self._flushes: list[Callable[[], object]] = []  # due when the loop's turn ends
        self._starting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe from the stream's last `RING` events, once per process (a failure leaves
        the tail unready: feeds then pull their consumers only)."""
        if self._starting is None and self.supported():
            self._starting = asyncio.get_running_loop().create_task(self._start())
        if self._starting is not None:
            await asyncio.shield(self._starting)

    async def stop(self) -> None:
        """Unsubscribe (at shutdown); every member is let go first."""
        self.break_all("the gateway is stopping")
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    @property
    def ready(self) -> bool:
        """Subscribed: feeds may join."""
        return self.last >= 0

    def supported(self) -> bool:
        """The connected nats-server has `$JS.API.CONSUMER.RESET` (2.14 or newer), which joined
        feeds need to move their consumers."""
        version = self.nc.connected_server_version
        return (version.major, version.minor) >= MIN_SERVER

    async def _start(self) -> None:
        try:
            js = self.nc.jetstream()
            state = (await js.stream_info(self.stream)).state
            # warm: the last RING events are read first, so the clients of a gateway that just
            # died, each seconds behind, join at once instead of each pulling its consumer
            last = max(state.first_seq, state.last_seq + 1 - RING, 1) - 1
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=last + 1)  # fmt: skip
            self._sub = await js.subscribe(
                self.all_events, stream=self.stream, cb=self._on_msg, ordered_consumer=True,
                config=config, pending_msgs_limit=1 << 16, pending_bytes_limit=64 << 20,
            )  # fmt: skip
            self.last = last
        except (TimeoutError, NatsError) as exc:
            log.warning("sse_tail_not_started", error=str(exc)[:200])

    # -- membership -------------------------------------------------------------------
    def join(self, member: Member, filters: list[str], after: int) -> bool:
        """Join `member`, which has everything up to stream sequence `after`; False when
        the tail cannot continue it exactly (not started, or `after` older than the ring)."""
        if not self.ready:
            return False
        first = self.ring[0].seq if self.ring else self.last + 1
        if after < min(first - 1, self.last):
            return False
        keys = _index(filters)
        live: list[Item] = []
        member.live = live
        self._keys[member] = keys
        for match, key in keys:
            self._table(match, key)[member] = after
        newer = itertools.takewhile(lambda i: i.seq > after, reversed(self.ring))  # its lag only
        live.extend(_missed(keys, newer))
        live.reverse()
        if len(live) > member.capacity:
            self.leave(member, "behind already")
            return False
        if live:
            member.wake()
        metrics.tail_joined.inc()
        return True

    def leave(self, member: Member, reason: str = "") -> None:
        """Let `member` go (it stops getting items; `live` becomes None); with a `reason`, it is
        told (`left`) so it pulls its consumer again."""
        for match, key in self._keys.pop(member, ()):
            table = self._table(match, key)
            table.pop(member, None)
            if not table and match != "all":
                (self._types if match == "type" else self._exact).pop(key, None)
        if member.live is not None:
            member.live = None
            if reason:  # counted here: the feed's loop may be blocked in a write meanwhile
                metrics.tail_left.inc()
                member.left(reason)

    def break_all(self, reason: str) -> None:
        """Let every member go, telling each `reason` (a hole in the stream, or the gateway
        stopping)."""
        for member in list(self._keys):
            self.leave(member, reason)

    def after_turn(self, flush: Callable[[], object]) -> None:
        """Call `flush` at the event loop's next turn, once every message that arrived in this
        one was dispatched: a member's sink holds what it took until then, so a client gets
        one write per turn instead of one per event (issue 15, saturation: the send syscall
        per delivery was half of the gateway's busy time)."""
        flushes = self._flushes
        flushes.append(flush)
        if len(flushes) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        flushes, self._flushes = self._flushes, []
        for flush in flushes:
            try:
                flush()
            except Exception:  # one feed's bug must not hold back the others' writes
                log.exception("sse_tail_flush_failed")

    def members(self) -> int:
        """How many feeds are joined."""
        return len(self._keys)

    def _table(self, match: str, key: str) -> dict[Member, int]:
        if match == "all":
            return self._all
        return (self._types if match == "type" else self._exact).setdefault(key, {})

    @staticmethod
    def _wants(keys: list[tuple[str, str]], item: Item) -> bool:
        subject = reading.subject_of(item)
        aggregate_type = subject.rsplit(".", 2)[-2]
        return any(
            k == "all" or (k == "type" and v == aggregate_type) or (k == "exact" and v == subject)
            for k, v in keys
        )

    # -- the subscription -------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        if is_delivery(msg.reply):
            self.receive(ack_position(msg.reply).stream_seq, msg.subject, msg.data)

    def receive(self, seq: int, subject: str, data: bytes) -> None:
        """Stream message `seq`: check it once, keep it in the ring, hand it to the
        members it is for; a sequence that does not follow the last sends every member
        back to its consumer."""
        if seq <= self.last:
            return  # a redelivery after the ordered consumer was recreated
        if seq != self.last + 1:
            log.warning("sse_tail_gap", last=self.last, sequence=seq, members=self.members())
            self.break_all(f"the tail skipped from {self.last} to {seq}")
            self.ring.clear()
            self._ring_bytes = 0
        self.last = seq
        item = reading.item(seq, subject, data)
        if not item.skipped:  # the `json` frame, once for all (datastar renders per client)
            item = item._replace(wire=frame(item.data, event=item.event_type, id=seq))
        self._keep(item)
        self._dispatch(item)

    def _keep(self, item: Item) -> None:
        """Keep `item` in the ring, dropping the oldest past `RING` items or `RING_BYTES`."""
        ring = self.ring
        ring.append(item)
        self._ring_bytes += len(item.data) + len(item.wire)
        while len(ring) > RING or (self._ring_bytes > RING_BYTES and len(ring) > 1):
            old = ring.popleft()
            self._ring_bytes -= len(old.data) + len(old.wire)

    def _dispatch(self, item: Item) -> None:
        subject = reading.subject_of(item)
        tables = [self._all]
        typed = self._types.get(subject.rsplit(".", 2)[-2])
        if typed:
            tables.append(typed)
        exact = self._exact.get(subject)
        if exact:
            tables.append(exact)
        seq, behind, direct = item.seq, [], 0
        for table in tables:
            for member, after in table.items():
                live = member.live
                if live is None or seq <= after:
                    continue
                if not live:  # nothing waits before it: the feed's sink may write it now
                    sink = member.sink
                    if sink is not None and sink(item):
                        direct += 1
                        continue
                elif len(live) >= member.capacity:  # its socket does not drain: it leaves,
                    behind.append(member)  # and pulls the rest from its consumer
                    continue
                live.append(item)
                member.wake()
        if direct:
            metrics.direct_writes.inc(direct)
        for member in behind:
            self.leave(member, "fell behind")
