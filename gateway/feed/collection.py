"""Full collections of a gateway holding many feeds (issue 15, latency at 10,000 clients).

CPython 3.11 collects its oldest generation each time the objects that survived into it grew
by a quarter, walking every tracked object: with 10,000 open feeds that walk took up to
1,071 ms and found nothing (17 of them while the clients connected, the last ones inside the
latency bench's window: p99 1.0-1.3 s instead of ~0.1 s; docs/benchmarks.md, session 7). The
feeds' objects live as long as their connections, so a walk over them finds nothing until
feeds close (each closed feed leaves ~40 objects in reference cycles).

`Collections` freezes (`gc.freeze`) what survived a full collection that collected (almost)
nothing: later full collections walk only what is newer, and stay short. What is frozen is
never collected, so a round ends — everything unfrozen, one full collection, the survivors
frozen again — once the feeds closed since the round began reach `CHURN` of those open then
(and at least `MIN_CLOSED`; not sooner than `ROUND_MIN_S` after it began, so a mass
disconnect costs one walk, not one per quarter), or `EVERY_S` after it began (other cycles,
e.g. of plain requests, may have died frozen meanwhile). Garbage held meanwhile: the cycles
of that many closed feeds (a few KiB each) and of what else died within the round; the price,
one walk of everything per round (as CPython's own rule makes under churn). The technique:
`gc.freeze`'s documentation, and Instagram's "Dismissing Python Garbage Collection at
Instagram" (2017).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

NOTHING = 1_000  # a full collection that collected fewer objects found nothing worth walking
CHURN = 0.25  # closed feeds, as a share of those open at the freeze, that unfreeze
MIN_CLOSED = 500  # closed feeds that unfreeze at least
EVERY_S = 600.0  # seconds after the first freeze of a round that unfreeze at the latest
ROUND_MIN_S = 30.0  # seconds a round lasts at least (a mass disconnect: one walk per 30 s)


class Collections:
    """The gateway's full-collection policy (see the module docstring); `start` once the
    process serves, `stop` at the end. `open_feeds()` is how many feeds are open now."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_feeds: Callable[[], int]) -> None:
        self.loop = loop
        self.open_feeds = open_feeds
        self.closed = 0  # feeds closed since the round's first freeze
        self.frozen_with = 0  # feeds open at the round's first freeze (0: nothing frozen)
        self.since = 0.0  # loop time of the round's first freeze
        self._pending = False

    def start(self) -> None:
        """Watch the full collections."""
        gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Stop watching; what is frozen is given back to the collector."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        gc.unfreeze()

    def closed_one(self) -> None:
        """A feed closed: once enough did since the freeze, their cycles are collected."""
        self.closed += 1
        churned = self.closed >= max(MIN_CLOSED, CHURN * self.frozen_with)
        if self.frozen_with and churned and self.loop.time() - self.since >= ROUND_MIN_S:
            self.round()

    def round(self) -> None:
        """Unfreeze, collect everything once, freeze what survives (a new round)."""
        gc.unfreeze()
        gc.collect()
        self.frozen_with = 0
        self._freeze()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # runs inside the collector: the freeze is done by the loop right after
        full = phase == "stop" and info["generation"] == 2
        if full and info["collected"] < NOTHING and not self._pending:
            self._pending = True
            self.loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        self._pending = False
        now = self.loop.time()
        if self.frozen_with and now - self.since >= EVERY_S:
            self.round()
            return
        if not self.frozen_with:  # a round begins: its churn counts from here
            self.since, self.closed = now, 0
            self.frozen_with = max(1, self.open_feeds())
        gc.freeze()
