"""Cyclic garbage collection paused while a catch-up batch is decoded and applied.

A catch-up batch (up to 50,000 events) keeps about ten container objects per event alive
until it is applied: they survive the young collections into the oldest generation, and
the full collections that follow (of every object the process holds, the `versions`
states included) ran several times per batch — 27 of them, 1.9 s of 8.7 s of CPU, over
300,000 events of the example (docs/benchmarks.md, issue 16 session 6). The batch's
objects die by reference counting once it is applied, so those collections found nothing.
`paused()` turns automatic collection off while any thread is inside it and back on (if
it was on) when the last one leaves; the collections that come due then run as usual.
`Stretch` holds one pause across consecutive catch-up batches.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pause:
    """How many threads are inside `paused()`, and whether collection was on before."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.was_enabled = False


_PAUSE = _Pause()


@contextmanager
def paused() -> Iterator[None]:
    """No automatic cyclic collection while inside (process-wide; re-entrant and safe from
    several threads); the state before the first entry is restored after the last exit,
    also when the body raises."""
    with _PAUSE.lock:
        if _PAUSE.inside == 0:
            _PAUSE.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSE.inside += 1
    try:
        yield
    finally:
        with _PAUSE.lock:
            _PAUSE.inside -= 1
            if _PAUSE.inside == 0 and _PAUSE.was_enabled:
                gc.enable()


STRETCH_EVENTS = 500_000  # events a `Stretch` keeps collection paused for at most


class Stretch:
    """A pause held across consecutive catch-up batches by the feed's loop: leaving a pause
    costs one young collection over every object still alive that was allocated in it
    (the batch just applied, the next one decoded ahead: 10.7 % of the apply thread with a
    pause per batch, docs/benchmarks.md), so it is left once per stretch instead — at the
    first batch that is not a catch-up one, or after `every` events (cyclic garbage of
    the process is then collected at least that often)."""

    def __init__(self, every: int = STRETCH_EVENTS) -> None:
        self.every = every
        self.events = 0  # events held since the pause began
        self._pause: contextlib.AbstractContextManager[None] | None = None

    def hold(self, events: int) -> None:
        """A catch-up batch of `events` comes next: keep collection paused (left and
        paused again once `every` events were held)."""
        if self._pause is not None and self.events >= self.every:
            self.release()
        if self._pause is None:
            self._pause = paused()
            self._pause.__enter__()
            self.events = 0
        self.events += events

    def release(self) -> None:
        """Leave the pause, if held (a live batch comes next, or the feed ends), with one
        full collection and a freeze of what survives it (the `versions` states the
        catch-up built): walked once here, then skipped by every later full collection,
        instead of walked by a young, a middle and a full collection in turn while the
        live tail runs."""
        pause, self._pause = self._pause, None
        if pause is not None:
            pause.__exit__(None, None, None)
            if gc.isenabled():
                gc.collect()
                gc.freeze()
