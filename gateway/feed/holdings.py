"""The process-wide budget of events held in memory for `unbounded` feeds.

`unbounded` keeps pulling while its client does not read, up to `sse_unbounded_cap`
events per feed; without a bound across feeds, a few dozen clients that never read could
take the gateway's memory (40 took 193 MB). So every event an unbounded feed holds is
counted here in bytes (its body, subject and ack subject, plus `OVERHEAD` for the message
object: about 370 bytes measured with tracemalloc), and when all of them together pass
`sse_unbounded_budget_bytes` (default 64 MiB) the feed holding the most is ended: its
events are dropped from memory and its stream closes with an `event: lag` notice naming
the budget, so its client reconnects with `Last-Event-ID` and loses nothing.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.msg import Msg

OVERHEAD = 384
REASON = (
    "the gateway's memory budget for unbounded feeds is in use and this feed held the most "
    "(IRONSTAR_GATEWAY_SSE_UNBOUNDED_BUDGET_BYTES)"
)


class Holder(Protocol):
    held_bytes: int

    def overflow(self, reason: str) -> None: ...


def size(msg: Msg) -> int:
    return len(msg.data) + len(msg.subject) + len(msg.reply or "") + OVERHEAD


class Holdings:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.total = 0
        self._holders: set[Holder] = set()

    def add(self, holder: Holder, count: int) -> None:
        self._holders.add(holder)
        holder.held_bytes += count
        self.total += count
        if self.total > self.budget:
            largest = max(self._holders, key=lambda h: h.held_bytes)
            largest.overflow(REASON)  # gives back what it held (`drop`)

    def remove(self, holder: Holder, count: int) -> None:
        count = min(count, holder.held_bytes)
        holder.held_bytes -= count
        self.total -= count

    def drop(self, holder: Holder) -> None:
        """Everything `holder` held is gone (overflowed or closed)."""
        self.total -= holder.held_bytes
        holder.held_bytes = 0
        self._holders.discard(holder)
