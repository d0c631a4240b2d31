"""The gateway's one subscription for every SSE client's deliveries, and its limits.

Each feed pulls its consumer with `MSG.NEXT` requests whose reply subject is
`<inbox>.<token>`; one wildcard subscription per process receives them all and hands each
to its feed without awaiting anything. A delivery keeps its event subject, so it is routed
by the consumer named in its ack subject; the server's status replies (request expired,
consumer deleted) come on the request's own reply subject, and are routed by its token.
A thousand clients cost a thousand dictionary
entries, not a thousand subscriptions and their tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from common.errors import TooManyRequests, Unavailable
from common.jetstream import ack_position, is_delivery
from gateway import metrics
from gateway.feed.collection import Collections
from gateway.feed.credit import Credit
from gateway.feed.takeover import Arrivals, Handover

STUCK_S = 1.0  # after `closing`, a feed still open this long is cut (below uvicorn's 3 s)


class Receiver(Protocol):
    """A feed the inbox routes to (`ClientFeed`); neither method may await."""

    def deliver(self, msg: Msg) -> None:
        """Take a delivery or a status reply of one of the feed's pull requests."""

    def wake(self) -> None:
        """Wake the feed's stream loop (the gateway is closing)."""


class Inbox:
    """The process's one subscription `<inbox>.*` for every feed's pull requests (see the module
    docstring), and its limits: `per_client` open connections per client id (429), `total` for
    the process (503), and the `credit` of catch-up pulls (`gateway/feed/credit.py`). Started
    and stopped with the app (`gateway/feed/process.py`)."""

    def __init__(
        self, nc: Client, closing: asyncio.Event, per_client: int, total: int, pull_budget: int
    ) -> None:
        self.nc = nc
        self.credit = Credit(pull_budget)  # events in flight to catching-up feeds
        self.closing = closing
        self.prefix = nc.new_inbox()
        self.sink = nc.new_inbox()  # answers no one waits for: nothing subscribes to it
        self.per_client = per_client
        self.total = total
        self._feeds: dict[str, Receiver] = {}  # by the token of the request reply subject
        self._consumers: dict[str, Receiver] = {}  # by consumer name
        self._clients: Counter[str] = Counter()
        self._open = 0  # the sum of `_clients` (a storm of opens must not sum it each time)
        self.arrivals = Arrivals()  # connections taking over their consumer's feed
        # full collections over the feeds
        self.collections = Collections(asyncio.get_running_loop(), lambda: len(self._feeds))
        self._sub: Any = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (once), and wake every registered feed when `closing` is set."""
        if self._sub is None:
            self.collections.start()
            self._sub = await self.nc.subscribe(
                f"{self.prefix}.*", cb=self._on_msg, pending_msgs_limit=0, pending_bytes_limit=0
            )
            self._watch = asyncio.create_task(self._wake_all_on_close())

    @property
    def started(self) -> bool:
        """Subscribed: pulled messages reach their feeds."""
        return self._sub is not None

    async def stop(self) -> None:
        """Unsubscribe and stop watching `closing`; a NATS connection already gone is not
        an error."""
        if self._watch is not None:
            self._watch.cancel()
        sub, self._sub, self._watch = self._sub, None, None
        if sub is not None:
            self.collections.stop()
        if sub is not None:
            with contextlib.suppress(NatsError):  # NATS already gone: nothing to undo
                await sub.unsubscribe()

    def admit(self, client_id: str) -> None:
        """Count a new connection, or refuse it: 429 per client id, 503 per process."""
        if self._open >= self.total:
            raise Unavailable(
                f"this gateway serves its limit of {self.total} SSE connections; "
                "retry, or connect to another replica",
                retry_after=1,
            )
        if self._clients[client_id] >= self.per_client:
            raise TooManyRequests(
                f"client_id {client_id!r} already has {self.per_client} open SSE connections; "
                "close one, or use another client_id per tab",
                retry_after=1,
            )
        self._clients[client_id] += 1
        self._open += 1
        metrics.connections.inc()

    def release(self, client_id: str) -> None:
        """A connection of `client_id` ended (one `admit` given back)."""
        self._clients[client_id] -= 1
        self._open -= 1
        if self._clients[client_id] <= 0:
            del self._clients[client_id]
        metrics.connections.dec()

    async def take_over(self, consumer: str, mine: Handover | None) -> None:
        """End the open feed of `consumer` on this gateway, if any, and wait (bounded) for its
        last move: the newest connection wins (`gateway/feed/takeover.py`); Conflict (409)
        when a newer one arrived meanwhile. `mine` None: a consumer no one else can name."""
        if mine is not None:
            feed = getattr(self._consumers.get(consumer), "handover", None)
            await self.arrivals.take_over(consumer, mine, feed)

    def register(self, token: str, consumer: str, feed: Receiver) -> str:
        """The reply subject of `feed`'s pull requests."""
        if consumer in self._consumers:
            raise TooManyRequests(
                f"consumer {consumer} already feeds an open connection on this gateway: the "
                "same client_id and topics cannot be read twice at once; the older one did not "
                "end in time",
                retry_after=1,
            )
        self._feeds[token] = self._consumers[consumer] = feed
        return f"{self.prefix}.{token}"

    def unregister(self, token: str, consumer: str) -> None:
        """Stop routing to the feed registered with `token` and `consumer` (late replies are
        dropped; the server redelivers what was not acked)."""
        if self._feeds.pop(token, None) is not None:
            self._consumers.pop(consumer, None)
            self.collections.closed_one()

    async def _on_msg(self, msg: Msg) -> None:
        reply = msg.reply
        if is_delivery(reply):
            feed = self._consumers.get(ack_position(reply).consumer)
        else:
            feed = self._feeds.get(msg.subject[len(self.prefix) + 1 :])
        if feed is not None:  # else: a late reply to a feed that has gone; the server redelivers
            feed.deliver(msg)

    async def _wake_all_on_close(self) -> None:
        await self.closing.wait()
        for feed in list(self._feeds.values()):
            feed.wake()
        # A feed blocked in a write to a client that does not read never sees `closing`, and
        # uvicorn cancels it after its graceful timeout (3 s) before its last move: the client
        # came back at its first event (verify8 V8-1). Its connection is cut first — the
        # kernel's counters sampled, the transport's bytes dropped, what the kernel queued
        # still sent (`drain`) — so the feed ends and moves its consumer past what the
        # client's host acknowledged (verify8b V8b-1).
        await asyncio.sleep(STUCK_S)
        for feed in list(self._feeds.values()):
            handover = getattr(feed, "handover", None)  # a named feed's (`ClientFeed`)
            if handover is not None:
                handover.cut()
