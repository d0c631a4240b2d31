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

from gateway.feed.window import Item


class Held:
    """The tail's frames for one feed, held until the loop's turn ends (module docstring).

    `write(body) -> bool` writes one chunk below the ASGI chain (False: nothing written);
    `written(items)` and `refused(items)` are told what happened to each flush's items, in
    order; `later(flush)` calls `flush` when the current turn of the event loop ends."""

    __slots__ = ("_capacity", "_items", "_later", "_refused", "_write", "_written")

    def __init__(
        self,
        capacity: int,
        write: Callable[[bytes], bool],
        written: Callable[[list[Item]], None],
        refused: Callable[[list[Item]], None],
        later: Callable[[Callable[[], bool]], None],
    ) -> None:
        self._capacity, self._items = max(1, capacity), list[Item]()
        self._write, self._written, self._refused, self._later = write, written, refused, later

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
            self._later(self.flush)
        items.append(item)
        return True

    def flush(self) -> bool:
        """Write what is held as one chunk; False when the socket refused it (`refused`)."""
        items = self._items
        if not items:
            return True
        self._items = []
        body = items[0].wire if len(items) == 1 else b"".join([i.wire for i in items])
        if not self._write(body):
            self._refused(items)
            return False
        self._written(items)
        return True

    def __len__(self) -> int:
        return len(self._items)
