"""One write per caught-up client per turn of the event loop (issue 15, saturation).

The live tail (`gateway/feed/tail.py`) hands a joined feed every event of its topics as it
reads them, and its sink used to write each one to the client's socket at once
(`gateway/feed/direct.py`): at 1,000 clients and 1,000 appends/s that was one `send`
syscall per delivery, half of the gateway's busy time, where the in-process broadcast it is
measured against writes everything a client's queue holds in one `send`
(docs/benchmarks.md, "Issue 15, session 6"). A feed's `Held` keeps what the tail hands it
during one turn and writes it as one chunk when the turn ends (`Tail.after_turn`), or
sooner: before the feed's own loop writes anything (it calls `flush` when it wakes), and
once `capacity` items are held (so a client that does not read still meets the socket's
high-water mark and its feed's capacity, as with one write per event).

Nothing is counted as written before the socket took it: `written` (the caller's
bookkeeping, which moves the feed's consumer lazily) sees only items whose bytes are the
transport's; items the socket refused (gone, or not drained) go to `refused`, which queues
them in front of the feed's live buffer for its awaited path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.feed.window import Item


class Writer(Protocol):
    """Where a `Held` writes (the feed's stream loop, `gateway/feed/stream.py`)."""

    def write(self, body: bytes) -> bool:
        """Write one chunk below the ASGI chain now; False: nothing was written."""

    def written(self, items: list[Item]) -> None:
        """The `items` of one chunk are the transport's."""

    def refused(self, items: list[Item]) -> None:
        """The socket did not take the chunk of `items` (nothing of it was written)."""

    def later(self, flush: Callable[[], bool]) -> None:
        """Call `flush` when the current turn of the event loop ends."""


class Held:
    """The tail's frames for one feed, held until the loop's turn ends (module docstring);
    thousands per gateway, so it keeps one reference to its `Writer` (issue 15, memory per
    idle client)."""

    __slots__ = ("_capacity", "_items", "_to")

    def __init__(self, capacity: int, to: Writer) -> None:
        self._capacity, self._items, self._to = max(1, capacity), list[Item](), to

    def offer(self, item: Item) -> bool:
        """Take `item` to write with the rest of this turn's; False (not taken) for an item
        without a ready frame (a skipped event), or when `capacity` items were held and the
        socket refused them: the caller queues it for the feed's loop, after them."""
        if not item.wire:
            return False
        if len(self._items) >= self._capacity and not self.flush():
            return False
        items = self._items
        if not items:
            self._to.later(self.flush)
        items.append(item)
        return True

    def flush(self) -> bool:
        """Write what is held as one chunk; False when the socket refused it (`refused`)."""
        items = self._items
        if not items:
            return True
        self._items = []
        body = items[0].wire if len(items) == 1 else b"".join([i.wire for i in items])
        if not self._to.write(body):
            self._to.refused(items)
            return False
        self._to.written(items)
        return True

    def __len__(self) -> int:
        return len(self._items)
