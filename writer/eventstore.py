"""The writer's port to its event store: the protocol, the aggregate key, what stores raise.

Two stores implement `EventStore`: `writer/store.py` (JetStream, what the service runs) and
`writer/memory.py` (in memory, for unit tests). tests/integration/test_event_store_contract.py
runs the same contract over both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from common.envelope import Envelope, Stored
from common.errors import Undecidable


@dataclass(frozen=True, slots=True)
class AggregateKey:
    """One aggregate: a registered aggregate type and an id already checked by
    `common.subjects.valid_id` (`[A-Za-z0-9_-]{1,64}`, DESIGN.md §3)."""

    aggregate_type: str
    aggregate_id: str

    @classmethod
    def of(cls, envelope: Envelope) -> AggregateKey:
        """The aggregate an envelope belongs to."""
        return cls(envelope.aggregate_type, envelope.aggregate_id)

    def __str__(self) -> str:
        return f"{self.aggregate_type} {self.aggregate_id!r}"


class WrongExpectedSequence(Exception):
    """An append was refused: the aggregate moved on since it was read (another writer
    appended), or the stream recognised the append's message ids as already stored.

    `duplicate_of` is the stored sequence when the stream recognised a single event's
    message id (a retried publish), None otherwise (an atomic batch never says which).
    """

    def __init__(self, reason: str, duplicate_of: int | None = None) -> None:
        super().__init__(reason)
        self.duplicate_of = duplicate_of


class EventStore(Protocol):
    """Where the writer reads an aggregate's history and appends to it.

    Sequences are global stream positions (1-based, increasing, shared by all aggregates);
    an aggregate's "last sequence" is that of its newest event, 0 before its first.
    """

    async def read(self, key: AggregateKey, after: int) -> list[Stored]:
        """The aggregate's events with a sequence above `after`, oldest first.

        Raises Undecidable (naming the sequence) at a stored message that is not an
        envelope of this aggregate; Unavailable when the store does not answer in time.
        """
        ...

    async def append(
        self, envelopes: Sequence[Envelope], msg_ids: Sequence[str], expected: int
    ) -> int:
        """Append one or more envelopes of one aggregate, all or none; return the
        sequence of the last one.

        `msg_ids` (one per envelope) are remembered stream-wide, so a resent append is
        stored at most once. `expected` is the aggregate's last sequence as the caller
        knows it (0: a new aggregate). Raises WrongExpectedSequence when `expected` is not
        current or the ids were stored before; StorageFull when the store is full;
        Unavailable when it does not acknowledge.
        """
        ...


def undecidable(key: AggregateKey, sequence: int, reason: str) -> Undecidable:
    """The refusal of an aggregate whose event at `sequence` this writer cannot fold (HTTP
    500, not retryable: docs/operations.md, 'An event no one can read'); `reason` is cut
    to 300 characters."""
    return Undecidable(
        f"{key} cannot take commands: this writer cannot read its "
        f"event at sequence {sequence} ({reason[:300]}). Retrying does not help: deploy a "
        "writer that knows this event (docs/operations.md, 'An event no one can read')",
        sequence=sequence,
    )
