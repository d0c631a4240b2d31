"""One SSE client's durable JetStream consumer, pulled at the pace its socket drains.

The consumer is named from the client id and a hash of its filter, so the same client
with the same topics finds its position again, on any gateway replica. Deliveries come
from `MSG.NEXT` pull requests issued as credit: a new request only once everything asked
for so far was handed to the socket (or the request expired), and never for more than
`capacity` events; deliveries are acked (AckAll) only after their bytes were written. A
slow client therefore holds at most `capacity` events in the gateway while the rest of its
backlog waits in the stream. The `unbounded` policy is the exception: it keeps asking
while the client is blocked, up to its safety cap and the process-wide budget of
`gateway/feed/holdings.py`. A feed that has caught up stops pulling and is fed by the
process's live tail (`gateway/feed/tail.py`); its consumer then only follows it (`reset`) and
is kept alive (`touch`), until the feed falls behind and pulls it again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from common import jetstream
from common.jetstream import ack_position, is_delivery, pull_status
from common.subjects import Subjects
from gateway import metrics
from gateway.feed import holdings, requests
from gateway.feed.floors import Floor
from gateway.feed.inbox import Inbox
from gateway.feed.tail import MIN_SERVER, Tail
from gateway.feed.takeover import Handover
from gateway.feed.topics import Topic, consumer_name
from gateway.feed.wake import Wake
from gateway.feed.window import Item

_NOTHING: deque[Msg] = deque()  # every feed's empty buffer, shared: never appended to
_TOKENS = itertools.count(1)  # a feed's token in its pull requests' reply subject
RESET_FIRST_S = 2.0  # how long `open(likely=True)` waits for the reset's answer (seconds)


class ClientFeed:
    # thousands per gateway: no instance dict (issue 15, memory per idle client)
    """One SSE connection's durable consumer (see the module docstring). Fed by the inbox
    (`deliver`, `wake`, never awaiting) or the live tail (`live`), read by the stream loop (`ask`,
    `wait`, `take`, `ack`). `capacity` bounds what it holds (events), `inactive_s` is how long
    JetStream keeps the consumer after its last pull (seconds), `max_ack_pending` the consumer's
    bound (default `capacity`; `unbounded` asks for more), `owner` binds the name to a principal
    (`consumers.owner`), `held` the process's `unbounded` memory budget."""

    __slots__ = (
        "_asked", "_credit", "_expiry", "_lent", "_refill", "_timer", "_token",
        "_wake", "buffer", "cap", "capacity", "delivered", "drained", "expired", "fell",
        "filters", "floor", "gone", "handover", "held_bytes", "holdings", "inactive_s", "inbox",
        "js", "live", "max_ack_pending", "name", "on_close", "overflow_reason", "overflowed",
        "sink", "stream", "tail",
    )  # fmt: skip

    def __init__(
        self,
        js: JetStreamContext,
        inbox: Inbox,
        *,
        stream: str,
        subjects: Subjects,
        client_id: str,
        topics: tuple[Topic, ...],
        capacity: int,
        inactive_s: float,
        max_ack_pending: int | None = None,
        owner: str = "",
        held: holdings.Holdings | None = None,
    ) -> None:
        self.js = js
        self.inbox = inbox
        self.stream = stream
        self.name = consumer_name(client_id, topics, owner)
        self.on_close: Callable[[], None] | None = None  # once, when the feed is given up
        self.filters = [subjects.events(t.aggregate_type, t.aggregate_id) for t in topics] or [
            subjects.all_events
        ]
        self.capacity = capacity
        self.max_ack_pending = max_ack_pending or capacity
        self.inactive_s = inactive_s
        # deliveries not taken yet; a deque of its own only while it holds some (issue 15)
        self.buffer: deque[Msg] = _NOTHING
        self.expired = False  # the last pull request ended (keep-alive tick)
        self.gone = ""  # why the consumer cannot be pulled any more
        self.handover: Handover | None = None  # how the open connection gives way (F3)
        self.delivered = 0  # the consumer's delivery sequence before this connection's first
        self._credit = 0
        self._lent = 0  # of `_credit`: taken from the process's budget (`gateway/feed/credit.py`)
        self._expiry = 15.0
        self._asked = 0.0
        self._token = f"{next(_TOKENS):x}"  # unique in the process (the inbox prefix is random)
        self._wake = Wake()
        self.cap: int | None = None  # `unbounded`: keep pulling while blocked, up to this
        self.overflowed = 0  # `unbounded`: deliveries thrown away when the cap was passed
        self.overflow_reason = ""
        self.holdings = held  # `unbounded`: the process-wide budget of held bytes
        self.held_bytes = 0
        self._refill: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.tail: Tail | None = None  # the live tail (gateway/feed/tail.py)
        self.live: list[Item] | None = None  # the tail's items while joined
        # set by the stream loop while it waits: the tail writes an item itself (True) or not
        self.sink: Callable[[Item], bool] | None = None
        self.fell = ""  # why the feed left the tail (it pulls its consumer again)
        self.drained = False  # a `no_wait` request found nothing more: caught up (`ask`)
        self.floor: Floor | None = None  # a named feed's floor writes (gateway/feed/floors.py)

    async def open(
        self,
        start: int | None,
        last: int,
        creating: Callable[[], None] = lambda: None,
        *,
        likely: bool = False,
        recall: Callable[[], Awaitable[int | None]] | None = None,
    ) -> int:
        """Deliver from `start` (a new position), or continue where the consumer stopped;
        returns the stream position the feed starts after (the `connected` frame's `id:`).
        `creating` is called before a consumer that does not exist yet is created (it may
        raise to refuse). An existing idle consumer of this bound is moved to `start` with a
        reset (`gateway/feed/requests.py`: a storm creates and deletes nothing); one with
        deliveries in flight, waiting pull requests or another bound is replaced from `start`,
        else its ack floor; a new one starts after `last` (the stream's end when the client
        came). `likely` (a returning client in a storm): reset first and judged by the reset's
        answer, one request instead of two, falling back after `RESET_FIRST_S`. `recall` (a named
        client without `Last-Event-ID`) gives the position to start after when its consumer is
        missing (its floor, `gateway/feed/floors.py`; None: a new client, after `last`).
        docs/architecture.md, "Reconnect storms"."""
        self.inbox.register(self._token, self.name, self)
        if likely and start is not None and self._resettable() and await self._reset_first(start):
            return start - 1
        try:
            info = await self.js.consumer_info(self.stream, self.name)
        except NotFoundError:
            info = None
        stale = info is not None and requests.stale(info, self.max_ack_pending)
        start = await requests.start_at(info, start, last, stale, creating, recall)
        if info is not None and start is not None and not stale and self._resettable():
            try:
                return await self._move(start)
            except NotFoundError:  # removed meanwhile: created below
                info = None
            except APIError as exc:  # before the consumer's own start: replaced below
                if exc.err_code != jetstream.BELOW_START_SEQ:
                    raise
        if info is not None and start is not None:
            await self.js.delete_consumer(self.stream, self.name)
        if start is not None:
            config = requests.config(
                self.name, self.filters, start, self.max_ack_pending, self.inactive_s
            )
            await self.js.add_consumer(self.stream, config)
            self.delivered = 0
            return start - 1
        assert info is not None  # continuing: nothing in flight, the next delivery follows
        self.delivered = info.delivered.consumer_seq
        # the consumer's cursor minus one (nats-server reports `delivered.stream_seq` so)
        return int(info.delivered.stream_seq)

    def _resettable(self) -> bool:
        version = self.inbox.nc.connected_server_version
        return (version.major, version.minor) >= MIN_SERVER

    async def _reset_first(self, start: int) -> bool:
        """Reset the consumer to `start` without asking for its info first; True when its answer
        shows one of this feed's bound and no pull request waiting (else, or without an answer,
        `open` goes the long way: its info says whether to move, create or replace it)."""
        try:
            answer = await requests.reset(self.inbox.nc, self._reset, start, RESET_FIRST_S)
        except (TimeoutError, NatsError):
            return False
        if requests.idle_with_bound(answer, self.max_ack_pending):
            self.delivered = 0
            return True
        return False

    # -- called by the inbox, never awaiting ------------------------------------------
    def deliver(self, msg: Msg) -> None:
        """Take one message of a pull request (by the inbox, never awaiting; wakes the loop): a
        delivery is buffered, a status ends the request (`gone`: deleted or unreachable)."""
        if is_delivery(msg.reply):
            if self._lent:
                self._lent -= 1
                self.inbox.credit.give(1)
            if self.live is not None:  # a keep-alive pull met a new event: the tail has it
                return
            self._credit -= 1
            if not self._credit and not ack_position(msg.reply).pending:
                self.drained = True  # the request is filled: no `404` follows
            if self.overflowed:  # ending with a notice; the client resumes from its id
                return
            if self.buffer is _NOTHING:
                self.buffer = deque()
            self.buffer.append(msg)
            if self.holdings is not None:
                self.holdings.add(self, holdings.size_bytes(msg))
        else:
            status = pull_status(msg.headers)
            if status.consumer_deleted:
                self.gone = "the feed's consumer was deleted"
            elif status.code == jetstream.NO_RESPONDERS:  # the consumer's node died
                self.gone = "the feed's consumer cannot be reached"
            elif status.code == jetstream.HEARTBEAT or self.live is not None:
                return  # an idle heartbeat, or the end of a joined feed's `touch`
            elif status.code == jetstream.NO_MESSAGES:  # `no_wait`: nothing more in the stream
                self.drained = True
            self._credit = 0  # 408 expired, 404 none, 409 dropped: the request is over
            self._give_back()
            self.expired = True
        if self.cap is not None:
            self._unbounded()
        self._wake.set()

    def _unbounded(self) -> None:
        assert self.cap is not None
        if self.live is not None:  # the tail feeds it: nothing to pull
            return
        if len(self.buffer) >= self.cap:
            self.overflow("buffer over its cap")
        elif self._credit <= 0 and (self._refill is None or self._refill.done()):
            count = min(self.capacity, self.cap - len(self.buffer))
            self._refill = asyncio.get_running_loop().create_task(self.ask(count, self._expiry))

    def overflow(self, reason: str) -> None:
        """`unbounded` past a bound: drop what is held, stop asking, end with a notice."""
        metrics.lags.inc()
        metrics.drops.labels("unbounded").inc(len(self.buffer))
        self.overflowed += len(self.buffer) or 1
        self.overflow_reason = reason
        self.buffer = _NOTHING
        if self.holdings is not None:
            self.holdings.drop(self)
        self.cap = None  # stop asking: the stream ends with a notice
        self._wake.set()

    def wake(self) -> None:
        """Wake the stream loop (the gateway is closing, or the tail handed over items)."""
        self._wake.set()

    def left(self, reason: str) -> None:
        """The tail let this feed go (it fell behind, or the tail lost its place)."""
        self.fell = reason
        self._wake.set()

    def idle(self) -> bool:
        """No pull request outstanding and nothing delivered waits to be taken."""
        return self._credit <= 0 and not self.buffer

    def take_live(self) -> list[Item]:
        """Everything the tail handed over (at most `capacity`: past it, the feed left)."""
        taken = self.live
        if not taken:
            return []
        self.live = []
        return taken

    async def _move(self, start: int) -> int:
        """Reset an idle consumer known to exist to deliver from `start` next; the position
        before it (a refusal is raised as JetStream's APIError)."""
        answer = await requests.reset(self.inbox.nc, self._reset, start, 5)
        if "error" in answer:
            APIError.from_error(answer["error"])  # raises the error's own class
        self.delivered = 0
        return start - 1

    # subjects built when used, not held by idle feeds (issue 15, memory per client)
    @property
    def _reset(self) -> str:
        return requests.reset_subject(self.stream, self.name)

    @property
    def _next(self) -> str:
        return f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}"

    @property
    def _reply(self) -> str:  # the reply subject of its pull requests (`Inbox.register`)
        return f"{self.inbox.prefix}.{self._token}"

    async def reset(self, start: int) -> None:
        """Move the consumer to deliver from stream sequence `start` next (everything
        before it counts as acknowledged; `$JS.API.CONSUMER.RESET`, nats-server >= 2.14),
        without waiting for the answer."""
        await self.inbox.nc.publish(self._reset, requests.reset_body(start), reply=self.inbox.sink)

    async def resume_pull(self, start: int) -> str:
        """Move the consumer to `start` and wait for it; '' or why it cannot be pulled."""
        try:
            answer = await requests.reset(self.inbox.nc, self._reset, start, 5)
        except (TimeoutError, NatsError) as exc:
            return f"the feed's consumer cannot be reset ({exc!s:.100})"
        if "error" in answer:
            return f"the feed's consumer cannot be reset: {answer['error']}"
        self._credit, self.drained, self.fell = 0, False, ""
        return ""

    async def touch(self) -> None:
        """Keep a joined feed's consumer from being removed as inactive: a `no_wait` request
        for one event right after the consumer was moved to what was written, answered `404`
        at once (it never meets a new event; a `503` or a deletion ends the stream)."""
        await self.inbox.nc.publish(self._next, b'{"batch":1,"no_wait":true}', reply=self._reply)

    # -- called by the stream ---------------------------------------------------------
    def should_ask(self) -> bool:
        """No request open, or one unanswered for twice its expiry (lost: ask again)."""
        if self._credit <= 0:
            return True
        return asyncio.get_running_loop().time() - self._asked >= 2 * self._expiry

    async def ask(self, count: int, expires_s: float, no_wait: bool = False) -> None:
        """Issue credit: one pull request for `count` more deliveries. `no_wait`: what the
        stream holds now, then `404`, or a last delivery with `pending` 0 (`drained`)."""
        if count <= 0 or not self.should_ask():
            return
        self._give_back()  # a request lost on the way counts no more
        if no_wait:  # catching up: within the process's budget, or woken when there is room
            count = self._lent = self.inbox.credit.take(count, self)
            if not count:
                return
        self._asked = asyncio.get_running_loop().time()
        self._credit = count
        self._expiry = expires_s
        request: dict[str, Any] = {"batch": count, "expires": int(expires_s * 1e9)}
        if no_wait:
            request["no_wait"] = True
        body = json.dumps(request).encode()
        await self.inbox.nc.publish(self._next, body, reply=self._reply)

    def _give_back(self) -> None:
        if self._lent:
            self.inbox.credit.give(self._lent)
            self._lent = 0

    async def wait(self, timeout_s: float) -> None:
        """Until a delivery, the end of a pull request, a wake-up or `timeout_s` seconds.

        One timer per feed, moved only when the wake-up must come sooner: a timer that
        fires late for a deadline that moved on is a spurious wake-up, and cheaper than a
        new timer per delivery.
        """
        busy = self.buffer or self.live or self.expired or self.fell
        if not (busy or self._wake.is_set()) and timeout_s > 0:
            self.wake_by(asyncio.get_running_loop().time() + timeout_s)
            await self._wake.wait()
        self._wake.clear()

    def wake_by(self, when: float) -> None:
        """Wake the stream loop at `when` (event-loop seconds) at the latest."""
        loop = asyncio.get_running_loop()
        now, timer = loop.time(), self._timer
        if timer is None or timer.cancelled() or not now < timer.when() <= when:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(when, self._wake.set)

    def take(self, limit: int) -> list[Msg]:
        """Up to `limit` buffered deliveries, oldest first (out of the `unbounded` budget)."""
        count = min(limit, len(self.buffer))
        taken = [self.buffer.popleft() for _ in range(count)]
        if not self.buffer:
            self.buffer = _NOTHING
        if self.holdings is not None and taken:
            self.holdings.remove(self, sum(map(holdings.size_bytes, taken)))
        return taken

    async def ack(self, reply: str) -> None:
        """AckAll: everything up to this delivery was written (or intentionally skipped)."""
        await self.inbox.nc.publish(reply, b"+ACK")

    def close(self) -> None:
        """Give up the feed (once the response ends): leave the tail, cancel its timer and refill,
        unregister from the inbox, drop what it holds, then run `on_close` once. The consumer itself
        stays for a client that returns by `client_id` (JetStream removes it after `inactive_s`)."""
        self.cap = None
        if self.tail is not None:
            self.tail.leave(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._refill is not None:
            self._refill.cancel()
        self.inbox.unregister(self._token, self.name)
        self._give_back()
        self.inbox.credit.forget(self)
        self.buffer = _NOTHING
        if self.holdings is not None:
            self.holdings.drop(self)
        if self.floor is not None:
            self.floor.closed()
        closed, self.on_close = self.on_close, None
        if closed is not None:
            closed()
