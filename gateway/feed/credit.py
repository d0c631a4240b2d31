"""The process's budget of events in flight to catching-up feeds: asked for, not yet arrived.

A feed that is behind pulls its own consumer with `no_wait` requests of up to `capacity`
events (`gateway/feed/client.py`). When thousands of clients come back at once (a gateway
restart: each is seconds behind), every one asks at once, and nats-server queues all of it
on the gateway's one NATS connection faster than the process reads it; past the server's
`max_pending` (64 MiB) it closes the connection as a slow consumer and every feed of the
process breaks (measured with 5,000 clients reconnecting after a kill -9, `ironstar bench
sse --storm`). So those requests share `IRONSTAR_GATEWAY_SSE_PULL_BUDGET` events: a feed
asks for what is left (at most its capacity), and a feed that found nothing waits, first
come first served, to be woken as deliveries arrive. Waiting pulls (the tail is off or not
started) are not counted: they hold their credit for as long as they wait.
"""

from __future__ import annotations

from typing import Protocol


class Waiter(Protocol):
    """A feed that can be woken (`ClientFeed.wake`); never awaits."""

    def wake(self) -> None:
        """Wake the feed's stream loop: it asks again."""


class Credit:
    """`limit` events in flight at most, for every `no_wait` pull of the process."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.out = 0  # events asked for and not arrived (or the request ended)
        self._waiting: dict[Waiter, None] = {}  # first come first served, each once
        self._woken: set[Waiter] = set()  # woken for a share not taken yet
        self._promised = 0

    @property
    def chunk(self) -> int:
        """The share a woken feed is promised: an eighth of the budget, at least 1."""
        return max(1, self.limit // 8)

    def take(self, want: int, feed: Waiter) -> int:
        """Up to `want` events for `feed` (0: none left; it is woken when there are)."""
        if feed in self._woken:
            self._woken.discard(feed)
            self._promised -= self.chunk
        free = self.limit - self.out - self._promised
        granted = max(0, min(want, free))
        if granted:
            self.out += granted
            self._waiting.pop(feed, None)
        else:
            self._waiting[feed] = None
        return granted

    def give(self, count: int) -> None:
        """`count` events arrived, or a request ended with them unused: wake who waits."""
        self.out -= count
        while self._waiting and self.limit - self.out - self._promised >= self.chunk:
            feed = next(iter(self._waiting))
            del self._waiting[feed]
            if feed not in self._woken:
                self._woken.add(feed)
                self._promised += self.chunk
            feed.wake()

    def forget(self, feed: Waiter) -> None:
        """`feed` is gone: it waits no more, and its promised share is free again."""
        self._waiting.pop(feed, None)
        if feed in self._woken:
            self._woken.discard(feed)
            self._promised -= self.chunk
            self.give(0)
