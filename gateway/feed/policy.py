"""What a feed does when its client falls behind (pure): the four overflow policies.

| policy        | client falls more than `capacity` behind                                   |
|---------------|----------------------------------------------------------------------------|
| `block`       | nothing special: the backlog waits in JetStream, the client gets it all     |
| `drop-oldest` | the backlog is skipped to the latest event per aggregate; a `lag` notice    |
| `drop-newest` | the backlog past what was handed to the socket is dropped; a `lag` notice   |
| `unbounded`   | the gateway keeps pulling into memory; past the safety cap: notice, close   |
"""

from __future__ import annotations

import enum
import json

from common.errors import Invalid
from gateway.feed.window import Item, latest_per_key
from gateway.feed.wire import frame


class Policy(enum.StrEnum):
    """The four overflow policies of the table above; the value is the `policy` parameter's
    spelling."""

    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"
    UNBOUNDED = "unbounded"


def parse_policy(value: str | None) -> Policy:
    """The `policy` parameter: absent or empty → `block`; an unknown one is Invalid (422) naming
    `policy` and listing the four."""
    if value is None or value == "":
        return Policy.BLOCK
    try:
        return Policy(value)
    except ValueError:
        known = ", ".join(p.value for p in Policy)
        raise Invalid(
            f"policy {value[:40]!r} is unknown; use one of {known}",
            field="policy",
            fields=["policy"],
        ) from None


def overflowing(policy: Policy, pending: int, capacity: int) -> bool:
    """Does a backlog of `pending` events (still in the stream) call for skipping?"""
    return policy in (Policy.DROP_OLDEST, Policy.DROP_NEWEST) and pending > capacity


class Skip:
    """The backlog a dropping policy passes over: counts it and keeps what it promises."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.count = 0
        self.first = 0
        self.last = 0
        self._kept: list[Item] = []

    def take(self, items: list[Item]) -> None:
        """Pass over `items` (in stream order): counted, the range's first and last sequence kept,
        and for drop-oldest the latest event per aggregate kept to be sent."""
        if not items:
            return
        self.first = self.first or items[0].seq
        self.last = items[-1].seq
        self.count += len(items)
        if self.policy is Policy.DROP_OLDEST:
            self._kept = latest_per_key([*self._kept, *items])

    def kept(self) -> list[Item]:
        """What the client still gets: the latest event per aggregate for drop-oldest."""
        return self._kept

    def dropped(self) -> int:
        """How many events the client will never get: passed over, minus those kept."""
        return self.count - len(self._kept)

    def notice(self) -> bytes:
        """`event: lag`. With nothing kept its `id:` is the last sequence passed over, so a
        reconnect continues after the skipped range; drop-oldest's kept events follow it
        and the last of them carries that sequence."""
        body = {
            "policy": self.policy.value,
            "dropped": self.dropped(),
            "kept": len(self._kept),
            "first_sequence": self.first,
            "last_sequence": self.last,
        }
        return frame(json.dumps(body), event="lag", id=None if self._kept else self.last)


def unbounded_notice(cap: int, held: int, reason: str = "buffer over its cap") -> bytes:
    """The `event: lag` that ends an `unbounded` feed: `{"policy": "unbounded", "reason", "cap"
    (events), "dropped" (the `held` events thrown away), "action"}`, without an `id:`, so the client
    reconnects with the last `Last-Event-ID` it has and loses nothing."""
    body = {
        "policy": Policy.UNBOUNDED.value,
        "reason": reason,
        "cap": cap,
        "dropped": held,
        "action": "reconnect with Last-Event-ID to continue",
    }
    return frame(json.dumps(body), event="lag")
