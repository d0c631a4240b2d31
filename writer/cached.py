"""One aggregate as the writer holds it between commands: its folded state, where it
stands in the stream, and the results of its recent commands (for idempotency).

Built only from stored events (`apply`), so whatever two writers hold for an aggregate at
one sequence is the same, and a command id's answer depends on history, never on timing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from common.app import Aggregate
from common.envelope import Stored
from common.errors import CommandIdReused
from common.messages import CommandResult
from writer.eventstore import AggregateKey, undecidable

REMEMBERED_COMMANDS = 256  # per aggregate: how far back a command id is recognised


@dataclass(frozen=True, slots=True)
class RememberedCommand:
    """A command applied to the aggregate: its fingerprint (None when it was appended
    before fingerprints existed) and its first result."""

    fingerprint: str | None
    result: CommandResult


@dataclass
class CachedAggregate:
    """The writer's fold of one aggregate: `state` at `version` (1-based, 0 before the
    first event), `sequence` the stream sequence of its last event (0 before the first),
    `commands` the last `REMEMBERED_COMMANDS` command ids, oldest first.

    `known` is False until the entry is proven current once (caught up from the store, or
    appended to), not just assumed to be a new aggregate.
    """

    state: Any
    version: int = 0
    sequence: int = 0
    commands: OrderedDict[str, RememberedCommand] = field(default_factory=OrderedDict)
    known: bool = False

    def apply(self, kind: Aggregate, stored: list[Stored], events: list[Any] | None = None) -> None:
        """Fold stored events in; `events` are their decoded forms when we decided them.

        Raises Undecidable at an event this writer cannot fold (not the aggregate's next
        version, or one `evolve` refuses as impossible); the state stays at the event
        before it.
        """
        for index, one in enumerate(stored):
            envelope, key = one.event, AggregateKey.of(one.event)
            if envelope.version != self.version + 1:  # published around the writer
                reason = f"version {envelope.version} after version {self.version}"
                raise undecidable(key, one.sequence, reason)
            event = events[index] if events is not None else decoded(kind, one)
            try:
                self.state = kind.evolve(self.state, event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # e.g. a todo added twice, published around the writer (ImpossibleEvent)
                reason = f"{envelope.event_type} cannot be folded: {exc}"
                raise undecidable(key, one.sequence, reason) from None
            self.version, self.sequence = envelope.version, one.sequence
            self._remember(one)

    def result_of(self, command_id: str, fingerprint: str) -> CommandResult | None:
        """The first result of this command (marked `duplicate`) if already applied to the
        aggregate and remembered, else None.

        Raises CommandIdReused (409 naming `command_id`) when the id was used for another
        command, one with another fingerprint.
        """
        done = self.commands.get(command_id)
        if done is None:
            return None
        if done.fingerprint is not None and done.fingerprint != fingerprint:
            raise CommandIdReused(
                f"command_id {command_id!r} was already used on this aggregate for another "
                f"command (applied up to sequence {done.result.sequence}); a retry must resend "
                "the same command, a new command needs a new command_id",
                field="command_id",
                sequence=done.result.sequence,
            )
        return msgspec.structs.replace(done.result, duplicate=True)

    def _remember(self, stored: Stored) -> None:
        """Add an event to its command's result (one command's events are consecutive)."""
        envelope, metadata = stored.event, stored.event.metadata
        previous = self.commands.get(metadata.command_id)
        same = (
            previous is not None
            and previous.fingerprint == metadata.fingerprint
            and previous.result.version == envelope.version - 1
        )
        events = [*previous.result.events, envelope] if previous and same else [envelope]
        result = CommandResult(sequence=stored.sequence, version=envelope.version, events=events)
        self.commands[metadata.command_id] = RememberedCommand(metadata.fingerprint, result)
        self.commands.move_to_end(metadata.command_id)
        if len(self.commands) > REMEMBERED_COMMANDS:
            self.commands.popitem(last=False)


def decoded(kind: Aggregate, stored: Stored) -> Any:
    """The domain event of a stored envelope, upcast to its current schema.

    Raises Undecidable naming its sequence when the schema is newer than this writer knows
    or the payload does not decode (a rolling upgrade, or an event published around us).
    """
    envelope = stored.event
    known = kind.schema(envelope.event_type)
    if envelope.schema > known:
        reason = f"schema {envelope.schema} of {envelope.event_type} (this writer knows {known})"
    else:
        try:
            return kind.from_payload(envelope.event_type, envelope.schema, envelope.payload)
        except (msgspec.ValidationError, ValueError, KeyError, TypeError) as exc:
            reason = f"{envelope.event_type[:64]}: {exc}"
    raise undecidable(AggregateKey.of(envelope), stored.sequence, reason)
