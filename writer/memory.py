"""The event store in memory: the JetStream store's twin for fast unit tests.

It keeps the contract of `EventStore` the way JetStream does (the same contract tests
pass on both: tests/integration/test_event_store_contract.py): one global sequence shared
by every aggregate, the expected last sequence checked per aggregate before the message
ids, message ids remembered stream-wide (for ever here: JetStream forgets them after its
duplicate window), a batch stored whole or not at all. Nothing survives the process: it
is no store to run a service on.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.envelope import Envelope, Stored
from writer.eventstore import AggregateKey, WrongExpectedSequence


class InMemoryEventStore:
    """An `EventStore` (writer/eventstore.py) held in this process's memory."""

    def __init__(self) -> None:
        self._events: dict[AggregateKey, list[Stored]] = {}
        self._message_ids: dict[str, int] = {}  # message id -> the sequence it was stored at
        self._last = 0  # the global sequence of the newest event, 0 when empty

    async def read(self, key: AggregateKey, after: int) -> list[Stored]:
        """The aggregate's events with a sequence above `after`, oldest first."""
        return [one for one in self._events.get(key, []) if one.sequence > after]

    async def append(
        self, envelopes: Sequence[Envelope], msg_ids: Sequence[str], expected: int
    ) -> int:
        """Store the envelopes of one aggregate, all or none; the last one's sequence.

        Raises WrongExpectedSequence when `expected` is not the aggregate's last sequence,
        or when a message id was stored before (with `duplicate_of` for a single event, as
        JetStream answers a resent publish; without for a batch, as JetStream refuses one).
        ValueError for no envelopes, envelopes of several aggregates, or ids that do not
        pair with them: a caller's bug, which JetStream would store as given.
        """
        key = self._checked(envelopes, msg_ids)
        history = self._events.setdefault(key, [])
        last = history[-1].sequence if history else 0
        if expected != last:
            raise WrongExpectedSequence(f"wrong last sequence: {last} (expected {expected})")
        seen = [self._message_ids[i] for i in msg_ids if i in self._message_ids]
        if seen:
            duplicate_of = seen[0] if len(envelopes) == 1 else None
            raise WrongExpectedSequence("duplicate message id", duplicate_of)
        for msg_id, envelope in zip(msg_ids, envelopes, strict=True):
            self._last += 1
            history.append(Stored(sequence=self._last, event=envelope))
            self._message_ids[msg_id] = self._last
        return self._last

    @staticmethod
    def _checked(envelopes: Sequence[Envelope], msg_ids: Sequence[str]) -> AggregateKey:
        """The one aggregate of an append; ValueError for a malformed one."""
        if not envelopes or len(msg_ids) != len(envelopes):
            raise ValueError(f"{len(envelopes)} envelopes with {len(msg_ids)} message ids")
        keys = {AggregateKey.of(e) for e in envelopes}
        if len(keys) != 1:
            raise ValueError(f"one append holds events of one aggregate, not {len(keys)}")
        return keys.pop()
