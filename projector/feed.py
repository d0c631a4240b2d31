"""The projector's feed: its own durable consumer, pulled with credit, in ordered batches.

The DuckDB file is the truth about what was applied; the consumer is only a cursor. At
start the consumer is deleted and created again to deliver from checkpoint + 1, so a
crash between commit and ack re-delivers nothing that was applied, and an old consumer
position never skips events the file has not seen.

Speed: nats-py's `fetch` costs a request and a future per batch and tops out near 20k
messages/s here. Instead the feed keeps raw `CONSUMER.MSG.NEXT` pull requests outstanding
("credit", at most `credit_batches` x `size` messages) on one inbox whose callback only
appends to the batch being filled. Credit is issued only while fewer than `max_ready` full
batches wait, so a slow DuckDB back-pressures the server instead of filling memory; the
consumer's `max_ack_pending` bounds the same window on the server side. One AckAll on the
last message of a batch acknowledges the whole batch, after its commit.

Catching up, a batch grows to `catchup` events while the server reports more than `size`
messages pending: the DuckDB stage pays per statement and per aggregate a batch touches
(an example projection rewrites each touched list's row, the `versions` check writes
each touched state), so larger batches amortise it. `catchup` follows the aggregates the
replica knows (`catchup_size`: twice as many events, between `catchup_size` and
`catchup_max`), so a catch-up batch touches each aggregate about as often at 5M events
as at 1M (docs/architecture.md, "Catch-up batches sized to the aggregates"). A live tail
(pending at or below `size`) keeps `size`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from common.jetstream import (
    CONFLICT,
    NO_MESSAGES,
    NO_RESPONDERS,
    REQUEST_TIMEOUT,
    ack_position,
    is_delivery,
    pull_status,
)

if TYPE_CHECKING:
    from projector.prestage import Prestaged

Delivery = tuple[int, str, bytes]  # stream sequence, subject, body
PER_AGGREGATE = 2  # catch-up events per aggregate known (the `versions` check's PER_STATE)
_json = msgspec.json.Encoder()


def catchup_size(aggregates: int, floor: int, cap: int) -> int:
    """Events in a catch-up batch over a history of `aggregates` aggregates (those the
    `versions` check keeps in memory): `PER_AGGREGATE` x `aggregates`, at least `floor`
    and at most `cap` (at least `floor`). Per aggregate a batch touches, applying costs
    about the aggregate's size (a rewritten row, a written state), so a batch growing with
    the aggregates keeps that cost per event the same as a history grows
    (docs/benchmarks.md, "Issue 16, session 8")."""
    return max(floor, min(cap, PER_AGGREGATE * aggregates))


class FeedLost(Exception):
    """The consumer went away, or a delivery went missing; recreate the feed."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive deliveries `(stream sequence, subject, body)` in stream order, at least
    one; acknowledged together by one AckAll on `reply` after their commit."""

    deliveries: list[Delivery]
    pending: int  # messages left in the stream for this consumer after this batch
    reply: str  # the last message's ack subject: AckAll acknowledges the whole batch
    prestaged: Prestaged | None = None  # staged by the feed process (projector/prestage.py)

    @property
    def last(self) -> int:
        """The stream sequence of the batch's last delivery."""
        return self.deliveries[-1][0]


class Feed:
    """A durable pull consumer `durable` on `stream`, filtered to `subject`, delivering
    from `after` + 1 in `Batch`es: `size` messages (`catchup_size` while more than `size`
    wait; `catchup` may be moved up to `catchup_max` by `follow`), or what came within
    `linger_s` seconds of the first. At most `credit_batches` x
    `size` messages are requested ahead and `max_ready` full batches held; no message or
    heartbeat for 3 x `heartbeat_s` seconds re-issues the pull requests. With `inactive_s`,
    the server deletes the consumer once unused that long (a feed process's). `next` raises
    `FeedLost` when the consumer is deleted or a delivery is missing (recreate the feed)."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        subject: str,
        after: int,
        size: int = 1000,
        linger_s: float = 0.05,
        credit_batches: int = 2,
        max_ready: int = 2,
        heartbeat_s: float = 2.0,
        catchup_size: int = 0,
        catchup_max: int = 0,
        inactive_s: float | None = None,
    ) -> None:
        self.nc, self.stream, self.durable, self.subject = nc, stream, durable, subject
        self.after, self.size, self.linger_s = after, size, linger_s
        self.catchup = self.catchup_floor = max(size, catchup_size)
        self.catchup_max = max(self.catchup, catchup_max)
        self.max_credit, self.max_ready = credit_batches * size, max_ready
        self.heartbeat_s, self.inactive_s = heartbeat_s, inactive_s
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._pull = _json.encode(
            {"batch": size, "expires": int(30e9), "idle_heartbeat": int(heartbeat_s * 1e9)}
        )
        self._inbox = nc.new_inbox()
        self._credit = 0
        self._filling: list[Delivery] = []
        self._filling_since = 0.0
        self._filling_tail = ("", 0)  # reply and pending of the last message taken
        self._ready: deque[Batch] = deque()
        self._wake = asyncio.Event()
        self._seen = after
        self._heard = time.monotonic()
        self._lost: FeedLost | None = None
        self._sub: object | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> Feed:
        """(Re)create the consumer to deliver from `after` + 1 (or the stream's first
        sequence, if later) and issue the first pull requests. Raises nats-py's errors."""
        js = self.nc.jetstream()
        # A stream need not start at 1 (e.g. restored from a backup that began later):
        # its first sequence, not our checkpoint, is where deliveries start without a hole.
        first = (await js.stream_info(self.stream)).state.first_seq
        self._seen = max(self.after, first - 1)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.ALL,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if self.after else DeliverPolicy.ALL,
                opt_start_seq=self.after + 1 if self.after else None,
                filter_subject=self.subject,
                max_ack_pending=self.max_credit + (self.max_ready + 2) * self.catchup_max,
                ack_wait=60,
                max_waiting=64,
                inactive_threshold=self.inactive_s,
            ),
        )
        self._sub = await self.nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=0, pending_bytes_limit=0
        )
        await self._refill()
        return self

    async def close(self, delete: bool = False) -> None:
        """Stop receiving; with `delete`, also delete the consumer (best effort)."""
        if self._watch is not None:
            self._watch.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
            self._sub = None
        if delete:
            with contextlib.suppress(Exception):
                await self.nc.jetstream().delete_consumer(self.stream, self.durable)

    def follow(self, aggregates: int) -> None:
        """Size the next catch-up batches for a history of `aggregates` aggregates
        (`catchup_size`); the batch being filled is cut at the new size."""
        self.catchup = catchup_size(aggregates, self.catchup_floor, self.catchup_max)

    async def ack(self, batch: Batch) -> None:
        """AckAll up to the batch's last message; call only after its commit."""
        await self.nc.publish(batch.reply, b"+ACK")

    async def next(self, stop: asyncio.Event) -> Batch | None:
        """The next batch: `size` events, or fewer once the stream has no more or the first
        waited `linger_s`. None once `stop` is set. Raises the error that ended the feed's
        subscription (FeedLost: a sequence went missing or the consumer was deleted) so the
        replica restarts it."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._wake_on(stop))
        while not stop.is_set():
            if self._lost is not None:
                raise self._lost
            if self._ready:
                batch = self._ready.popleft()
                await self._refill()
                return batch
            wait = self.heartbeat_s
            if self._filling:
                wait = self._filling_since + self.linger_s - time.monotonic()
                if wait <= 0 or self._filling_tail[1] == 0:
                    return self._take()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, self.heartbeat_s)):
                    await self._wake.wait()
            if time.monotonic() - self._heard > 3 * self.heartbeat_s:
                # No message and no heartbeat: the pull requests were lost (e.g. reconnect).
                self._credit, self._heard = 0, time.monotonic()
                await self._refill()
        return None

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def _take(self) -> Batch:
        reply, pending = self._filling_tail
        batch = Batch(self._filling, pending, reply)
        self._filling = []
        return batch

    async def _on_message(self, msg: Msg) -> None:
        self._heard = time.monotonic()
        reply = msg.reply
        if is_delivery(reply):
            self._credit -= 1
            position = ack_position(reply)
            sequence, pending = position.stream_seq, position.pending
            if sequence > self._seen + 1:
                # A delivery to a pull request lost in a reconnect: the next AckAll would
                # acknowledge it unseen. The stream has no holes, so start over from the
                # last applied sequence instead.
                self._lost = FeedLost(f"sequence {self._seen + 1} went missing")
                self._wake.set()
                return
            if sequence > self._seen:  # a redelivery of what we hold already is dropped
                self._seen = sequence
                if not self._filling:
                    self._filling_since = self._heard
                self._filling.append((sequence, msg.subject, msg.data))
                self._filling_tail = (reply, pending)
                if len(self._filling) >= (self.catchup if pending > self.size else self.size):
                    self._ready.append(self._take())
                if pending == 0 or len(self._filling) == 1 or not self._filling:
                    self._wake.set()
        else:
            status = pull_status(msg.headers)
            if status.code in (NO_MESSAGES, REQUEST_TIMEOUT):  # its unused credit comes back
                self._credit -= status.pending_messages
            elif status.code == CONFLICT:
                if status.consumer_deleted:
                    self._lost = FeedLost(f"consumer {self.durable} was deleted")
                    self._wake.set()
                    return
                self._credit = 0  # e.g. leadership change: outstanding requests are gone
            elif status.code == NO_RESPONDERS:  # a pull no consumer takes: deleted while no
                # request waited (verify10 F2: the feed waited forever), or its node gone
                self._lost = FeedLost(f"consumer {self.durable} does not answer (deleted?)")
                self._wake.set()
                return
        if self._credit < self.max_credit and len(self._ready) < self.max_ready:
            await self._refill()  # (checked here first: a coroutine per message costs)

    async def _refill(self) -> None:
        if len(self._ready) >= self.max_ready:
            return
        while self._credit < self.max_credit:
            self._credit += self.size
            await self.nc.publish(self._next, self._pull, reply=self._inbox)
