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
    """A feed that holds deliveries in memory (`ClientFeed`): `held_bytes` counted here."""

    held_bytes: int

    def overflow(self, reason: str) -> None:
        """Drop everything held and end the feed with a notice saying `reason`."""


def size_bytes(msg: Msg) -> int:
    """The bytes one held delivery costs: body, subject and ack subject plus `OVERHEAD` (measured
    with tracemalloc)."""
    return len(msg.data) + len(msg.subject) + len(msg.reply or "") + OVERHEAD


class Holdings:
    """The bytes every `unbounded` feed of the process holds, against `budget_bytes`
    (`sse_unbounded_budget_bytes`): past it, the feed holding the most overflows (see the module
    docstring)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.total_bytes = 0
        self._holders: set[Holder] = set()

    def add(self, holder: Holder, nbytes: int) -> None:
        """`holder` now holds `nbytes` more; past the budget the largest holder overflows (and gives
        back what it held through `drop`)."""
        self._holders.add(holder)
        holder.held_bytes += nbytes
        self.total_bytes += nbytes
        if self.total_bytes > self.budget_bytes:
            largest = max(self._holders, key=lambda h: h.held_bytes)
            largest.overflow(REASON)  # gives back what it held (`drop`)

    def remove(self, holder: Holder, nbytes: int) -> None:
        """`holder` handed `nbytes` to its socket (never more than it holds)."""
        nbytes = min(nbytes, holder.held_bytes)
        holder.held_bytes -= nbytes
        self.total_bytes -= nbytes

    def drop(self, holder: Holder) -> None:
        """Everything `holder` held is gone (overflowed or closed)."""
        self.total_bytes -= holder.held_bytes
        holder.held_bytes = 0
        self._holders.discard(holder)
