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
most cycles) and collects it itself, in rounds of one full collection each:
- once the feeds closed since the last round reach `CHURN` of those open then (and at least
  `MIN_CLOSED`; not sooner than `ROUND_MIN_S` after it, so a mass disconnect costs one walk):
  each closed feed leaves ~40 objects in reference cycles;
- once the process's resident memory grew by `GROWTH` of what it was at the last round (and
  by `MIN_GROWTH` at least; read every `CHECK_S`): whatever else died in cycles, as
  CPython's own rule bounds it, by growth;
- `EVERY_S` after the last round at the latest.
A round walks everything (~1 s at 10,000 feeds); what start-up froze (`common/runtime.py`)
stays frozen. The technique: `gc.set_threshold`'s and `gc.freeze`'s documentation, and
Instagram's "Dismissing Python Garbage Collection at Instagram" (2017).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable

NEVER = 2**31 - 1  # a threshold the oldest generation's count never reaches
CHURN = 0.25  # closed feeds, as a share of those open at the last round, that start one
MIN_CLOSED = 500  # closed feeds that start a round at least
ROUND_MIN_S = 30.0  # seconds between two rounds started by closed feeds at least
GROWTH = 0.25  # growth of resident memory since the last round that starts one
MIN_GROWTH = 64 << 20  # bytes of growth that start a round at least
CHECK_S = 5.0  # seconds between two readings of resident memory
EVERY_S = 600.0  # seconds after the last round that start one at the latest


def resident_bytes() -> int:
    """The process's resident memory (bytes) from `/proc/self/statm`; 0 where there is none
    (not Linux: the growth rule is then off, the others hold)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Collections:
    """The gateway's full-collection policy (see the module docstring); `start` once the
    process serves, `stop` at the end. `open_feeds()` is how many feeds are open now,
    `resident()` the process's resident memory in bytes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        open_feeds: Callable[[], int],
        resident: Callable[[], int] = resident_bytes,
    ) -> None:
        self.loop = loop
        self.open_feeds = open_feeds
        self.resident = resident
        self.closed = 0  # feeds closed since the last round
        self.open_then = 0  # feeds open at the last round
        self.memory_then = 0  # resident bytes at the last round
        self.since = 0.0  # loop time of the last round
        self._thresholds: tuple[int, int, int] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the oldest generation from CPython's rule; rounds from now on."""
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, NEVER)
            self._mark()
            self._timer = self.loop.call_later(CHECK_S, self._tick)

    def stop(self) -> None:
        """Give the oldest generation back to CPython's rule."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def closed_one(self) -> None:
        """A feed closed: once enough did since the last round, their cycles are collected."""
        self.closed += 1
        if self._churned():
            self.round()

    def round(self) -> None:
        """One full collection; the counts start again from here."""
        gc.collect()
        self._mark()

    def _churned(self) -> bool:
        enough = self.closed >= max(MIN_CLOSED, CHURN * self.open_then)
        return enough and self.loop.time() - self.since >= ROUND_MIN_S

    def _mark(self) -> None:
        self.since, self.closed = self.loop.time(), 0
        self.open_then, self.memory_then = self.open_feeds(), self.resident()

    def _tick(self) -> None:
        self._timer = self.loop.call_later(CHECK_S, self._tick)
        self.check()

    def check(self) -> None:
        """A round, if memory grew, feeds churned or `EVERY_S` passed (every `CHECK_S`)."""
        then = self.memory_then
        grown = then > 0 and self.resident() - then >= max(MIN_GROWTH, GROWTH * then)
        if grown or self._churned() or self.loop.time() - self.since >= EVERY_S:
            self.round()
