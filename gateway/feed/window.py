"""The time-window stream operators of a feed (pure): debounce and batching.

Both take deliveries in stream order with the current time and hand back what is due;
the feed asks `deadline()` when to call `due(now)` next. Neither reorders: whatever they
emit is in sequence order, so the last `id:` a client saw always covers everything before
it (delivered, or intentionally superseded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple


class Item(NamedTuple):
    """One delivery: its stream sequence, aggregate key, event type and raw envelope."""

    seq: int
    key: str
    event_type: str
    data: bytes
    ack: str = ""  # the JetStream ack subject of this delivery
    pending: int = 0  # events still waiting in the stream for this client when delivered
    event: Any = None  # the decoded envelope (`common.envelope.Envelope`)
    skipped: str = ""  # why the feed cannot show this delivery (it still moves `id:` past it)
    wire: bytes = b""  # its `json` frame, rendered once for every recipient (gateway/feed/tail.py)


def latest_per_key(items: Iterable[Item]) -> list[Item]:
    """The last item of every key, in sequence order."""
    last: dict[str, Item] = {}
    for item in items:
        last.pop(item.key, None)  # re-insert so dict order follows the latest sequence
        last[item.key] = item
    return list(last.values())


class Debouncer:
    """Keep only the last event per aggregate until the stream is quiet for `window_s`.

    A continuous stream still updates: the group is flushed at the latest `max_wait_s`
    after its first event. A critical event type is never debounced: it flushes the group
    at once, itself last, so nothing that precedes it is held back behind it.
    """

    def __init__(self, window_s: float, max_wait_s: float, critical: frozenset[str]) -> None:
        self.window_s = window_s
        self.max_wait_s = max(max_wait_s, window_s)
        self.critical = critical
        self._pending: dict[str, Item] = {}
        self._first = 0.0
        self._last = 0.0
        self.superseded = 0  # events replaced by a later one of the same aggregate

    def add(self, item: Item, now: float) -> list[Item]:
        """Hold `item` (at `now`, event-loop seconds), replacing the held one of its aggregate; a
        critical event type flushes the group at once and is returned with it."""
        if not self._pending:
            self._first = now
        self._last = now
        if self._pending.pop(item.key, None) is not None:
            self.superseded += 1
        self._pending[item.key] = item
        if item.event_type in self.critical:
            return self.flush()
        return []

    def deadline(self) -> float | None:
        """When (event-loop seconds) the held group is due: `window_s` after the last event, at most
        `max_wait_s` after the first; None when nothing is held."""
        if not self._pending:
            return None
        return min(self._last + self.window_s, self._first + self.max_wait_s)

    def due(self, now: float) -> list[Item]:
        """The held group if its deadline has passed at `now`, else nothing."""
        deadline = self.deadline()
        return self.flush() if deadline is not None and now >= deadline else []

    def flush(self) -> list[Item]:
        """Everything held, in sequence order, now."""
        out = list(self._pending.values())
        self._pending = {}
        return out


class Batcher:
    """Group deliveries into one message per `window_s` (opened by its first event), or
    sooner once `max_size` events are waiting."""

    def __init__(self, window_s: float, max_size: int) -> None:
        self.window_s = window_s
        self.max_size = max(1, max_size)
        self._items: list[Item] = []
        self._opened = 0.0

    def add(self, items: Sequence[Item], now: float) -> list[list[Item]]:
        """Add `items` (at `now`, event-loop seconds); returns the batches that reached
        `max_size`."""
        out: list[list[Item]] = []
        for item in items:
            if not self._items:
                self._opened = now
            self._items.append(item)
            if len(self._items) >= self.max_size:
                out.append(self.flush())
        return out

    def deadline(self) -> float | None:
        """When (event-loop seconds) the open batch is due: `window_s` after its first item; None
        when none is open."""
        return self._opened + self.window_s if self._items else None

    def due(self, now: float) -> list[list[Item]]:
        """The open batch if its deadline has passed at `now`, else nothing."""
        deadline = self.deadline()
        return [self.flush()] if deadline is not None and now >= deadline else []

    def flush(self) -> list[Item]:
        """The open batch (possibly empty), now."""
        out, self._items = self._items, []
        return out
