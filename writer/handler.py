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
(`CachedAggregate`, writer/cached.py) remembers both for the aggregate's last
`REMEMBERED_COMMANDS` commands. After catching
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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

from common import catalogue
from common.app import Aggregate
from common.envelope import Envelope, Metadata, Stored, new_envelope, utc_now
from common.errors import Conflict, RuleViolation, StaleVersion, TooLarge
from common.messages import CommandRequest, CommandResult
from common.subjects import valid_id
from writer.cached import CachedAggregate
from writer.eventstore import AggregateKey, EventStore, WrongExpectedSequence

CONFLICT_BACKOFF_S = 0.002  # before the n-th retry: uniform(0, CONFLICT_BACKOFF_S * 2**n)


def fingerprint(command: Any, actor: str | None) -> str:
    """What makes two commands with one id the same command: the decoded command (its type
    tag and every field, defaults filled in, in declaration order) and who sent it.

    32 hex characters (the first 128 bits of a SHA-256).
    """
    return hashlib.sha256(msgspec.json.encode([command, actor])).hexdigest()[:32]


def message_ids(key: AggregateKey, expected: int, command_id: str, count: int) -> list[str]:
    """`Nats-Msg-Id`s of one append: `<type>.<id>:<expected>:<command_id>:<n>`, n from 0.

    JetStream dedupes message ids across the whole stream, so they are scoped: by
    aggregate (the same command id elsewhere is another command) and by expected
    sequence (only a retried publish of this very append is the same message).
    """
    base = f"{key.aggregate_type}.{key.aggregate_id}:{expected}:{command_id}"
    return [f"{base}:{n}" for n in range(count)]


@dataclass(frozen=True, slots=True)
class _Command:
    """One command being handled: its aggregate, decoded form, request and fingerprint."""

    kind: Aggregate
    key: AggregateKey
    decoded: Any
    request: CommandRequest
    fingerprint: str


@dataclass(slots=True)
class _Lock:
    """The lock of one aggregate and how many commands hold or wait for it."""

    lock: asyncio.Lock
    users: int = 0


class CommandHandler:
    """Decides commands and appends their events, per the rules in the module docstring.

    `max_retries`: decisions redone after a refused append before a 409 Conflict;
    `cache_size`: aggregates kept in memory (least recently used evicted);
    `on_conflict`: called for each append another writer beat; `max_events`: events one
    command may append (more is 413 TooLarge, IRONSTAR_WRITER_MAX_EVENTS_PER_COMMAND).
    """

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
        self._cache: OrderedDict[AggregateKey, CachedAggregate] = OrderedDict()
        self._locks: dict[AggregateKey, _Lock] = {}

    async def handle(self, aggregate_type: str, request: CommandRequest) -> CommandResult:
        """Apply one command; its result, or the first result of a repeated command id.

        Raises (common.errors): NotFound for an unknown aggregate type or command; Invalid
        for an id, command id or payload of the wrong shape; RuleViolation (409) for a
        rule the command breaks; CommandIdReused (409) for a command id used by another
        command; StaleVersion (412) for a stale `expected_sequence`; Conflict (409) when
        the aggregate kept moving for `max_retries` + 1 attempts; TooLarge (413);
        Undecidable (500) at history this writer cannot fold; Unavailable / StorageFull
        (503) from the store.
        """
        kind = catalogue.current().aggregate(aggregate_type)
        key = AggregateKey(aggregate_type, valid_id(request.aggregate_id))
        valid_id(request.command_id, "command_id")  # it becomes message ids (headers)
        decoded = kind.command(request.type, request.payload)
        one = _Command(kind, key, decoded, request, fingerprint(decoded, request.actor))
        async with self._exclusive(key):
            return await self._decide_and_append(one)

    @asynccontextmanager
    async def _exclusive(self, key: AggregateKey) -> AsyncIterator[None]:
        """One command per aggregate at a time in this process; other writers use the OCC."""
        held = self._locks.setdefault(key, _Lock(asyncio.Lock()))
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[key]

    async def _decide_and_append(self, one: _Command) -> CommandResult:
        # Not cached: assume new (expected sequence 0); the append says if it is not.
        cached, fresh = self._entry(one.kind, one.key), False
        for attempt in range(self.max_retries + 1):
            decision = await self._decide(one, cached, fresh)
            if isinstance(decision, CommandResult):
                return decision
            envelopes = self._envelopes(one, cached.version, decision)
            msg_ids = message_ids(one.key, cached.sequence, one.request.command_id, len(envelopes))
            try:
                last = await self.store.append(envelopes, msg_ids, expected=cached.sequence)
            except WrongExpectedSequence as exc:
                done = await self._after_refusal(one, cached, exc)
                if done is not None:
                    return done
                fresh = True
                await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2**attempt))
                continue
            first = last - len(envelopes) + 1
            stored = [Stored(sequence=first + n, event=e) for n, e in enumerate(envelopes)]
            cached.apply(one.kind, stored, decision)
            cached.known = True
            return CommandResult(sequence=last, version=cached.version, events=envelopes)
        raise Conflict(
            f"{one.key} kept changing under {self.max_retries + 1} attempts; resend the command",
            sequence=cached.sequence,
        )

    async def _after_refusal(
        self, one: _Command, cached: CachedAggregate, refused: WrongExpectedSequence
    ) -> CommandResult | None:
        """Catch up after a refused append; the command's result if it turns out to be
        stored already (a lost ack, a repeat), None when it must be decided again."""
        if cached.known:  # a cold cache entry missing history is no conflict
            self.on_conflict()
        await self._catch_up(one.kind, one.key, cached)
        done = cached.result_of(one.request.command_id, one.fingerprint)
        if done is not None:  # our own append after all (a lost ack, a repeat)
            return done
        if refused.duplicate_of is not None:
            # this very append was stored, and more than REMEMBERED_COMMANDS since
            return CommandResult(
                sequence=refused.duplicate_of, version=cached.version, events=[], duplicate=True
            )
        return None

    async def _decide(
        self, one: _Command, cached: CachedAggregate, fresh: bool
    ) -> CommandResult | list[Any]:
        """Decide on the cached state; its events are checked by the append's expected
        sequence, but a refusal or a no-op is only trusted on a state just read."""
        while True:
            try:
                decision = self._decide_on(one, cached)
                if fresh or isinstance(decision, list) or decision.duplicate:
                    return decision
            except (RuleViolation, StaleVersion):
                if fresh:
                    raise
            await self._catch_up(one.kind, one.key, cached)
            fresh = True

    def _decide_on(self, one: _Command, cached: CachedAggregate) -> CommandResult | list[Any]:
        """The command's events on `cached`, or its result (a repeat, or no events)."""
        done = cached.result_of(one.request.command_id, one.fingerprint)
        if done is not None:
            return done
        expected = one.request.expected_sequence
        if expected not in (None, cached.sequence):
            raise StaleVersion(
                f"If-Match {expected} is stale: the aggregate is at "
                f"sequence {cached.sequence}; read it again and resend",
                sequence=cached.sequence,
            )
        events = one.kind.decided(cached.state, one.decoded)  # an app's bug: 500, nothing stored
        if len(events) > self.max_events:
            raise TooLarge(
                f"{one.request.type} would append {len(events)} events; at most "
                f"{self.max_events} per command (IRONSTAR_WRITER_MAX_EVENTS_PER_COMMAND)",
                limit=self.max_events,
            )
        return events or CommandResult(sequence=cached.sequence, version=cached.version, events=[])

    def _entry(self, kind: Aggregate, key: AggregateKey) -> CachedAggregate:
        cached = self._cache.get(key)
        if cached is None:
            cached = CachedAggregate(state=kind.initial)
            self._cache[key] = cached
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return cached

    async def _catch_up(self, kind: Aggregate, key: AggregateKey, cached: CachedAggregate) -> None:
        cached.apply(kind, await self.store.read(key, after=cached.sequence))
        cached.known = True

    @staticmethod
    def _envelopes(one: _Command, version: int, events: list[Any]) -> list[Envelope]:
        """The envelopes of decided events, versions from `version` + 1, one timestamp."""
        request = one.request
        metadata = Metadata(
            command_id=request.command_id,
            correlation_id=request.correlation_id,
            causation_id=request.command_id,
            actor=request.actor,
            fingerprint=one.fingerprint,
        )
        occurred_at = utc_now()
        envelopes = []
        for offset, event in enumerate(events, start=1):
            event_type, payload = one.kind.to_payload(event)
            envelopes.append(
                new_envelope(
                    one.key.aggregate_type,
                    one.key.aggregate_id,
                    version + offset,
                    event_type,
                    payload,
                    schema=one.kind.schema(event_type),
                    occurred_at=occurred_at,
                    metadata=metadata,
                )
            )
        return envelopes
