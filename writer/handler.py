"""Command handling: decide, append, reply — with optimistic concurrency.

The writer keeps recently used aggregates in memory (state, version, last subject
sequence, and the results of their recent command ids). A command is decided against that
state without reading the stream, and appended with the cached last sequence as the
expected one: the stream itself checks that the cache was current. If another writer got
there first (or the aggregate was not cached and is not new) the append is refused, the
aggregate catches up from the stream and the command is decided again, a bounded number of
times. A refusal or a no-op is never checked by an append, so it is only answered on a
state that was just caught up.

Idempotency is per aggregate and per command: every event carries its command id and
the command's fingerprint (a hash of its type, decoded payload and actor), and the fold
remembers both for the aggregate's last `REMEMBERED_COMMANDS` commands. After catching
up, a repeated command (same id, same fingerprint) finds its first result and appends
nothing; the same id carrying another command is a 409 naming `command_id`. Both answers
depend only on the aggregate's history, never on timing: message ids
(`message_ids`) are scoped by aggregate and expected sequence, so the stream's duplicate
window only recognises a retried publish of one append (a lost ack), and never makes a
command on another aggregate, or a later one, a "duplicate".

An aggregate whose history holds an event this writer cannot fold (not an envelope, a
type or schema it does not know: a rolling upgrade) cannot take commands: `Undecidable`
(HTTP 500, not a retryable 503) names the event's sequence.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from common import catalogue
from common.app import Aggregate
from common.envelope import Envelope, Metadata, utc_now, uuid7
from common.errors import (
    CommandIdReused,
    Conflict,
    RuleViolation,
    StaleVersion,
    TooLarge,
    Undecidable,
)
from common.messages import CommandRequest, CommandResult
from common.subjects import valid_id

REMEMBERED_COMMANDS = 256  # per aggregate: how far back a command id is recognised


def fingerprint(command: Any, actor: str | None) -> str:
    """What makes two commands with one id the same command: the decoded command (its type
    tag and every field, defaults filled in, in declaration order) and who sent it."""
    return hashlib.sha256(msgspec.json.encode([command, actor])).hexdigest()[:32]


def message_ids(key: tuple[str, str], expected: int, command_id: str, count: int) -> list[str]:
    """`Nats-Msg-Id`s of one append: `<type>.<id>:<expected>:<command_id>:<n>`.

    JetStream dedupes message ids across the whole stream, so they are scoped: by
    aggregate (the same command id elsewhere is another command) and by expected
    sequence (only a retried publish of this very append is the same message).
    """
    base = f"{key[0]}.{key[1]}:{expected}:{command_id}"
    return [f"{base}:{n}" for n in range(count)]


class WrongExpectedSequence(Exception):
    """The aggregate's subject moved on since we read it (or the append was a duplicate).

    `duplicate_of` is the stored sequence when the stream recognised the message id.
    """

    def __init__(self, reason: str, duplicate_of: int | None = None) -> None:
        super().__init__(reason)
        self.duplicate_of = duplicate_of


class EventStore(Protocol):
    async def read(
        self, aggregate_type: str, aggregate_id: str, after: int
    ) -> list[tuple[int, Envelope]]: ...

    async def append(
        self, envelopes: Sequence[Envelope], msg_ids: Sequence[str], expected: int
    ) -> int:
        """Append all or none; return the last sequence or raise WrongExpectedSequence."""
        ...


@dataclass
class Loaded:
    state: Any
    version: int = 0
    sequence: int = 0
    # command id -> (fingerprint, first result); None: appended before fingerprints existed
    commands: OrderedDict[str, tuple[str | None, CommandResult]] = field(
        default_factory=OrderedDict
    )
    known: bool = False  # proven current once (caught up, or appended to), not just assumed new

    def apply(
        self, kind: Aggregate, stored: list[tuple[int, Envelope]], events: list[Any] | None = None
    ) -> None:
        """Fold stored events in; `events` are their decoded forms when we decided them.

        Raises Undecidable at an event this writer cannot fold (not the aggregate's next
        version, or one `evolve` refuses as impossible); the state stays at the event
        before it.
        """
        for index, (sequence, envelope) in enumerate(stored):
            if envelope.version != self.version + 1:  # published around the writer
                reason = f"version {envelope.version} after version {self.version}"
                raise undecidable(*_key(envelope), sequence, reason)
            event = events[index] if events is not None else _event(kind, sequence, envelope)
            try:
                self.state = kind.evolve(self.state, event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # e.g. a todo added twice, published around the writer (ImpossibleEvent)
                reason = f"{envelope.event_type} cannot be folded: {exc}"
                raise undecidable(*_key(envelope), sequence, reason) from None
            self.version, self.sequence = envelope.version, sequence
            self._remember(envelope.metadata, sequence, envelope)

    def result_of(self, command_id: str, print_: str) -> CommandResult | None:
        """The first result of this command if already applied to the aggregate (and
        remembered); CommandIdReused when the id was used for another command."""
        done = self.commands.get(command_id)
        if done is None:
            return None
        first_print, result = done
        if first_print is not None and first_print != print_:
            raise CommandIdReused(
                f"command_id {command_id!r} was already used on this aggregate for another "
                f"command (applied up to sequence {result.sequence}); a retry must resend "
                "the same command, a new command needs a new command_id",
                field="command_id",
                sequence=result.sequence,
            )
        return msgspec.structs.replace(result, duplicate=True)

    def _remember(self, metadata: Metadata, sequence: int, envelope: Envelope) -> None:
        command_id = metadata.command_id
        previous = self.commands.get(command_id)
        same = (
            previous is not None
            and previous[0] == metadata.fingerprint
            and previous[1].version == envelope.version - 1
        )
        events = [*previous[1].events, envelope] if previous and same else [envelope]
        result = CommandResult(sequence=sequence, version=envelope.version, events=events)
        self.commands[command_id] = (metadata.fingerprint, result)
        self.commands.move_to_end(command_id)
        if len(self.commands) > REMEMBERED_COMMANDS:
            self.commands.popitem(last=False)


def _event(kind: Aggregate, sequence: int, envelope: Envelope) -> Any:
    """The domain event of a stored envelope, or Undecidable naming its sequence."""
    known = kind.schema(envelope.event_type)
    if envelope.schema > known:
        reason = f"schema {envelope.schema} of {envelope.event_type} (this writer knows {known})"
    else:
        try:
            return kind.from_payload(envelope.event_type, envelope.schema, envelope.payload)
        except (msgspec.ValidationError, ValueError, KeyError, TypeError) as exc:
            reason = f"{envelope.event_type[:64]}: {exc}"
    raise undecidable(*_key(envelope), sequence, reason)


def _key(envelope: Envelope) -> tuple[str, str]:
    return envelope.aggregate_type, envelope.aggregate_id


def undecidable(aggregate_type: str, aggregate_id: str, sequence: int, reason: str) -> Undecidable:
    return Undecidable(
        f"{aggregate_type} {aggregate_id!r} cannot take commands: this writer cannot read its "
        f"event at sequence {sequence} ({reason[:300]}). Retrying does not help: deploy a "
        "writer that knows this event (docs/operations.md, 'An event no one can read')",
        sequence=sequence,
    )


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        max_retries: int,
        cache_size: int,
        on_conflict: Callable[[], None] = lambda: None,
        max_events: int = 1000,
    ) -> None:
        self.store = store
        self.max_events = max_events
        self.on_conflict = on_conflict
        self.max_retries = max_retries
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    async def handle(self, aggregate_type: str, request: CommandRequest) -> CommandResult:
        kind = catalogue.current().aggregate(aggregate_type)
        key = (aggregate_type, valid_id(request.aggregate_id))
        valid_id(request.command_id, "command_id")  # it becomes message ids (headers)
        command = kind.command(request.type, request.payload)
        print_ = fingerprint(command, request.actor)
        async with self._exclusive(key):
            return await self._decide_and_append(kind, key, command, request, print_)

    @asynccontextmanager
    async def _exclusive(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """One command per aggregate at a time in this process; other writers use the OCC."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _decide_and_append(
        self,
        kind: Aggregate,
        key: tuple[str, str],
        command: Any,
        request: CommandRequest,
        print_: str,
    ) -> CommandResult:
        # Not cached: assume new (expected sequence 0); the append says if it is not.
        loaded, fresh = self._entry(kind, key), False
        for attempt in range(self.max_retries + 1):
            decision = await self._decide(kind, key, loaded, command, request, print_, fresh)
            if isinstance(decision, CommandResult):
                return decision
            if len(decision) > self.max_events:
                raise TooLarge(
                    f"{request.type} would append {len(decision)} events; at most "
                    f"{self.max_events} per command (IRONSTAR_WRITER_MAX_EVENTS_PER_COMMAND)",
                    limit=self.max_events,
                )
            envelopes = self._envelopes(kind, key, loaded.version, decision, request, print_)
            msg_ids = message_ids(key, loaded.sequence, request.command_id, len(envelopes))
            try:
                last = await self.store.append(envelopes, msg_ids, expected=loaded.sequence)
            except WrongExpectedSequence as exc:
                if loaded.known:  # a cold cache entry missing history is no conflict
                    self.on_conflict()
                await self._catch_up(kind, key, loaded)
                fresh = True
                done = loaded.result_of(request.command_id, print_)
                if done is not None:  # our own append after all (a lost ack, a repeat)
                    return done
                if exc.duplicate_of is not None:
                    # this very append was stored, and more than REMEMBERED_COMMANDS since
                    return CommandResult(
                        sequence=exc.duplicate_of, version=loaded.version, events=[], duplicate=True
                    )
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            first = last - len(envelopes) + 1
            stored = list(zip(range(first, last + 1), envelopes, strict=True))
            loaded.apply(kind, stored, decision)
            loaded.known = True
            return CommandResult(sequence=last, version=loaded.version, events=envelopes)
        raise Conflict(
            f"{key[0]} {key[1]!r} kept changing under {self.max_retries + 1} attempts; "
            "resend the command",
            sequence=loaded.sequence,
        )

    async def _decide(
        self,
        kind: Aggregate,
        key: tuple[str, str],
        loaded: Loaded,
        command: Any,
        request: CommandRequest,
        print_: str,
        fresh: bool,
    ) -> CommandResult | list[Any]:
        """Decide on the cached state; its events are checked by the append's expected
        sequence, but a refusal or a no-op is only trusted on a state just read."""
        while True:
            try:
                decision = self._decide_on(kind, loaded, command, request, print_)
                if fresh or isinstance(decision, list) or decision.duplicate:
                    return decision
            except (RuleViolation, StaleVersion):
                if fresh:
                    raise
            await self._catch_up(kind, key, loaded)
            fresh = True

    @staticmethod
    def _decide_on(
        kind: Aggregate, loaded: Loaded, command: Any, request: CommandRequest, print_: str
    ) -> CommandResult | list[Any]:
        done = loaded.result_of(request.command_id, print_)
        if done is not None:
            return done
        if request.expected_sequence not in (None, loaded.sequence):
            raise StaleVersion(
                f"If-Match {request.expected_sequence} is stale: the aggregate is at "
                f"sequence {loaded.sequence}; read it again and resend",
                sequence=loaded.sequence,
            )
        events = kind.decided(loaded.state, command)  # a bug of the app: 500, nothing stored
        return events or CommandResult(sequence=loaded.sequence, version=loaded.version, events=[])

    def _entry(self, kind: Aggregate, key: tuple[str, str]) -> Loaded:
        loaded = self._cache.get(key)
        if loaded is None:
            loaded = Loaded(state=kind.initial)
            self._cache[key] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return loaded

    async def _catch_up(self, kind: Aggregate, key: tuple[str, str], loaded: Loaded) -> None:
        loaded.apply(kind, await self.store.read(key[0], key[1], after=loaded.sequence))
        loaded.known = True

    @staticmethod
    def _envelopes(
        kind: Aggregate,
        key: tuple[str, str],
        version: int,
        events: list[Any],
        request: CommandRequest,
        print_: str,
    ) -> list[Envelope]:
        metadata = Metadata(
            command_id=request.command_id,
            correlation_id=request.correlation_id,
            causation_id=request.command_id,
            actor=request.actor,
            fingerprint=print_,
        )
        occurred_at = utc_now()
        envelopes = []
        for offset, event in enumerate(events, start=1):
            event_type, payload = kind.to_payload(event)
            envelopes.append(
                Envelope(
                    event_id=uuid7(),
                    aggregate_type=key[0],
                    aggregate_id=key[1],
                    version=version + offset,
                    event_type=event_type,
                    schema=kind.schema(event_type),
                    occurred_at=occurred_at,
                    payload=payload,
                    metadata=metadata,
                )
            )
        return envelopes
