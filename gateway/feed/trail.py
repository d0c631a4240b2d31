"""Where the recent frames written to one connection end (verify6 V4, verify7b V7b-1), so a
named feed's consumer follows what the client's host acknowledged (`tcpi_bytes_acked`) even
while it reads slowly, in bursts, or not at all (`gateway/feed/direct.py`, `Outgoing`).

The connection's transport's `write` is wrapped to count the bytes it is handed (`sent`: one
addition per write); `base` is that count's origin in the kernel's count (acknowledged +
queued when the trail was made). An entry is (end of a frame's bytes in `sent`, stream
sequence, ack subject, items noted through it): one per *frame*, not per write, as one write
may carry hundreds of frames (a pull of `capacity` deliveries, the tail's items held while
the feed waited on the socket). At most `TRAIL` entries: when more, the entries the peer
acknowledged are dropped but the last of them (a move's candidate), and what remains is
thinned to `KEEP` entries evenly spaced in items noted (`_even`). So the last entry within
the peer's acknowledged bytes is at most ~2 x (items in flight) / (KEEP - 1) items behind
where its host stands, wherever in the in-flight range that is; the range itself is kept
small (`sockets.bound_unsent`). Tried before (session 7): one entry per write, 16 of them,
the newer half halved when full: a reader that keeps acknowledging moved into entries
hundreds of items apart (V7b-1: 23-137 read events came again on a return); 64 entries
thinned the same way were no better.
"""

from __future__ import annotations

import bisect
from typing import Any

TRAIL = 128  # frames a connection remembers at most while its peer has not acknowledged them
KEEP = 96  # what a full trail is thinned to: one sample of the kernel's counters per 32 frames
# A frame as `Trail.add` takes it: (bytes of its write after its end, sequence, ack subject,
# items noted through it)
Frame = tuple[int, int, str, int]
Entry = tuple[int, int, str, int]  # (end in `sent`, sequence, ack subject, items noted)


class Trail:
    """The entries of one connection's writes in flight (module docstring)."""

    __slots__ = ("base", "entries", "pending", "sent", "write")

    def __init__(self, transport: Any, base: int) -> None:
        self.base = base
        self.sent, self.entries = 0, list[Entry]()
        self.pending: tuple[int, list[Frame]] | None = None  # (its write's size, its frames)
        self.write, transport.write = transport.write, self._count

    def _count(self, data: bytes) -> None:
        self.sent += len(data)
        self.write(data)
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] == len(data):  # the write `expect` announced
            self.add(pending[1])

    def expect(self, size: int, frames: list[Frame]) -> None:
        """The next write (`size` bytes) carries `frames`: they are placed as the transport
        takes it, not once the caller's send returns (an awaited send waits for the drain,
        and a client that leaves meanwhile may have acknowledged part of the write). A next
        write of another size places nothing (at worst fewer entries, never a wrong one)."""
        self.pending = (size, frames)

    def add(self, frames: list[Frame]) -> bool:
        """Remember `frames`, the frames of the write just counted, in order (an end is the
        write's end less the bytes after the frame: never before the frame's last byte);
        whether the trail is over `TRAIL` (then `prune`)."""
        sent, entries = self.sent, self.entries
        entries += [(sent - after, seq, subject, noted) for after, seq, subject, noted in frames]
        return len(entries) > TRAIL

    def prune(self, acked: int | None) -> None:
        """Drop what the peer acknowledged (`acked` bytes in the kernel's count; None: not
        known) but the last such entry, then thin to `KEEP`."""
        entries = self.entries
        if acked is not None:
            at = bisect.bisect_right(entries, acked - self.base, key=_end)
            del entries[: max(0, at - 1)]
        if len(entries) > KEEP:
            _even(entries, KEEP)

    def reached(self, acked: int) -> tuple[int, str, int] | None:
        """The last entry whose frame's bytes all are within the peer's `acked` bytes (the
        kernel's count): (sequence, ack subject, items noted), forgetting it and those
        before it; None when there is none."""
        entries = self.entries
        at = bisect.bisect_right(entries, acked - self.base, key=_end)
        if not at:
            return None
        _, seq, subject, noted = entries[at - 1]
        del entries[:at]
        return seq, subject, noted


def _even(entries: list[Entry], keep: int) -> None:
    """Thin `entries` (ordered) in place to at most `keep` (>= 2), the first and the last kept,
    the rest the last entry at or before each of `keep - 2` evenly spaced numbers of items
    noted: gaps of at most twice the even spacing where entries were denser, O(keep log n)."""
    first, last = entries[0][3], entries[-1][3]
    step, kept, at, end = (last - first) / (keep - 1), [entries[0]], 1, len(entries) - 1
    for k in range(1, keep - 1):
        j = bisect.bisect_right(entries, first + k * step, at, end, key=_noted) - 1
        if j >= at:
            kept.append(entries[j])
            at = j + 1
    kept.append(entries[-1])
    entries[:] = kept


def _end(entry: Entry) -> int:
    return entry[0]


def _noted(entry: Entry) -> int:
    return entry[3]
