"""Full collections of a gateway holding many feeds (issue 15, latency at 10,000 clients).

CPython 3.11 collects its oldest generation each time what survived into it grew by a
quarter, walking every object in it. With 10,000 open feeds those walks took up to 1,071 ms
and found nothing (session 7). Freezing what survived such a walk (session 7's policy) left
the busy feeds' own objects: a feed's coroutines, timers and futures of one wait live about
a second, long enough to be promoted, so at 10,000 clients x 10,000 deliveries/s a full
collection came every ~3 s and walked 80,000-160,000 of them for 80-145 ms, finding nothing
(a `gc.callbacks` probe, session 8): p99 198-278 ms (docs/benchmarks.md).

So the gateway takes the oldest generation from CPython's rule (its threshold is set out of
reach; the two young generations stay automatic: they walk only recent objects and free
most cycles) and collects it itself, by what the process holds, not by what was promoted:
- every `CHECK_S`, when the interpreter's allocated blocks (`sys.getallocatedblocks`, its
  objects; not resident memory, which a busy window's fragmentation grows) grew by `GROWTH`
  (and `MIN_GROWTH` at least) since the last collection: one collection of what is not
  frozen, then the survivors frozen (`gc.freeze`) — it walks what arrived since (new feeds),
  each object once;
- a full round (everything unfrozen, collected, frozen again; ~1 s at 10,000 feeds) once
  the feeds closed since the last round reach `CHURN` of those open then (and `MIN_CLOSED`
  at least; not sooner than `ROUND_MIN_S` after it, so a mass disconnect costs one walk):
  each closed feed leaves ~40 objects in reference cycles, frozen with it;
- a full round `EVERY_S` after the last at the latest: what else died frozen.
The technique: `gc.set_threshold`'s and `gc.freeze`'s documentation, and Instagram's
"Dismissing Python Garbage Collection at Instagram" (2017).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable

NEVER = 2**31 - 1  # a threshold the oldest generation's count never reaches
CHURN = 0.25  # closed feeds, as a share of those open at the last round, that start one
MIN_CLOSED = 500  # closed feeds that start a round at least
ROUND_MIN_S = 30.0  # seconds between two rounds started by closed feeds at least
GROWTH = 0.1  # growth of the allocated blocks since the last collection that starts one
MIN_GROWTH = 100_000  # blocks of growth that start one at least
CHECK_S = 1.0  # seconds between two readings of the allocated blocks
EVERY_S = 600.0  # seconds after the last round that start one at the latest


class Collections:
    """The gateway's full-collection policy (see the module docstring); `start` once the
    process serves, `stop` at the end. `open_feeds()` is how many feeds are open now,
    `allocated()` how many memory blocks the interpreter holds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        open_feeds: Callable[[], int],
        allocated: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self.loop = loop
        self.open_feeds = open_feeds
        self.allocated = allocated
        self.closed = 0  # feeds closed since the last round
        self.open_then = 0  # feeds open at the last round
        self.blocks_then = 0  # allocated blocks at the last collection
        self.since = 0.0  # loop time of the last round
        self._thresholds: tuple[int, int, int] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the oldest generation from CPython's rule; rounds from now on."""
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, NEVER)
            self.since, self.blocks_then = self.loop.time(), self.allocated()
            self.open_then = self.open_feeds()
            self._timer = self.loop.call_later(CHECK_S, self._tick)

    def stop(self) -> None:
        """Give the oldest generation back to CPython's rule, and what is frozen."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
            gc.unfreeze()

    def closed_one(self) -> None:
        """A feed closed: once enough did since the last round, their cycles are collected."""
        self.closed += 1
        if self._churned():
            self.round()

    def round(self) -> None:
        """A full round: everything unfrozen, one full collection, the survivors frozen."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.since, self.closed, self.open_then = self.loop.time(), 0, self.open_feeds()
        self.blocks_then = self.allocated()

    def check(self) -> None:
        """What is due (every `CHECK_S`): a full round, or a collection of what is new."""
        if self._churned() or self.loop.time() - self.since >= EVERY_S:
            self.round()
            return
        then, now = self.blocks_then, self.allocated()
        if then > 0 and now - then >= max(MIN_GROWTH, GROWTH * then):
            gc.collect()  # what is frozen is not walked
            gc.freeze()
            self.blocks_then = self.allocated()

    def _churned(self) -> bool:
        enough = self.closed >= max(MIN_CLOSED, CHURN * self.open_then)
        return enough and self.loop.time() - self.since >= ROUND_MIN_S

    def _tick(self) -> None:
        self._timer = self.loop.call_later(CHECK_S, self._tick)
        self.check()
