"""The event envelope: transport metadata around a domain event.

The envelope is the JSON body of each stream message. Its global position is the stream
sequence, taken from JetStream metadata and never written by the client; `Stored` pairs
the two once an event has been read back.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec
from msgspec import Meta

from common.subjects import ID_PATTERN

if TYPE_CHECKING:
    from common.catalogue import Catalogue

# The domain of every envelope field, checked when a stored message is read (so writer,
# projector and gateway read one message the same way): the limits are in docs/security.md.
MAX_VERSION = 2**53 - 1  # exact in every JSON reader, and in DuckDB's BIGINT
Token = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")]  # as an aggregate id
Label = Annotated[str, Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*\Z")]  # one line
# RFC 3339 in UTC, as `utc_now` writes it (`Z`, 0-6 fractional digits); a real date besides
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z\Z"


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where an event came from: the command that decided it (`command_id`, a token), the request
    chain (`correlation_id`, `causation_id`), who sent it (`actor`), and the command's
    fingerprint by which a retried command id is recognised (writer/handler.py). Text fields are
    one line of at most 200 characters."""

    command_id: Token
    correlation_id: Label
    causation_id: Label | None = None
    actor: Label | None = None
    fingerprint: Label | None = None  # of the command (type, payload, actor): see writer/handler


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event: `version` is its 1-based position in its aggregate (1..2**53-1), `schema`
    its payload's version, `occurred_at` RFC 3339 UTC, `payload` the event Struct's fields as
    JSON. Its stream sequence is not in it (JetStream's metadata). Bounds: docs/security.md."""

    event_id: Token
    aggregate_type: str
    aggregate_id: str
    version: Annotated[int, Meta(ge=1, le=MAX_VERSION)]
    event_type: str
    schema: Annotated[int, Meta(ge=1, le=2**31 - 1)]
    occurred_at: Annotated[str, Meta(pattern=TIMESTAMP)]
    payload: dict[str, Any]
    metadata: Metadata


class Stored(NamedTuple):
    """An envelope with its stream sequence (its global position, from JetStream's
    metadata, 1-based): what the projector applies and what a hook's `Batch.events` holds.
    A tuple, so `sequence, event = stored` unpacks it and one per event stays cheap."""

    sequence: int
    event: Envelope


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    """The envelope as JSON bytes, the body of a stream message."""
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """An envelope from JSON bytes, its fields' bounds checked; msgspec.DecodeError or
    ValidationError otherwise. A stored message is read with `decode_stored`, which also checks
    it against its subject and the app."""
    return _decoder.decode(data)


EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # snake_case, as every registered name


class Undecodable(ValueError):
    """A stream message that is not an event envelope of the aggregate whose subject it is
    on. Its stream sequence still counts: every reader skips it visibly (the projector's
    dead letters, the feed's `skipped` frame) or, where a decision needs it (the writer),
    refuses to decide."""


def decode_stored(data: bytes, aggregate_type: str, aggregate_id: str) -> Envelope:
    """The envelope stored on `aggregate_type`.`aggregate_id`'s subject, checked.

    Raises Undecodable when the subject's tokens are not a valid type and id, the body is
    not an envelope, names another aggregate than its subject, or any field is outside
    its domain: version 1..2**53-1, schema 1..the current one of its event type (this
    version must know the type), occurred_at a real RFC 3339 UTC time, event and command
    ids tokens, other metadata one line of at most 200 characters, and a payload its event
    type's struct accepts (ids, text lengths; the aggregates of the app's catalogue). So
    none of them can carry a line break, a selector or a wildcard into an SSE field, a
    page or a metric label, nor a value a read model cannot store.
    """
    return decode_checked(data, aggregate_type, aggregate_id)[0]


def decode_checked(data: bytes, aggregate_type: str, aggregate_id: str) -> tuple[Envelope, Any]:
    """`decode_stored`, and the domain event its payload check built (the event type's
    Struct, in the current schema): a reader that needs it (the projector's staging and
    `versions` check) converts each payload once, not twice. Raises Undecodable."""
    try:
        stored = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than msgspec decodes (a poison message, verify10)
        raise Undecodable(f"not an event envelope ({exc})") from None
    if stored.aggregate_type != aggregate_type or stored.aggregate_id != aggregate_id:
        raise Undecodable(
            f"an envelope of {stored.aggregate_type[:64]!r}.{stored.aggregate_id[:64]!r} "
            f"on the subject of {aggregate_type[:64]!r}.{aggregate_id[:64]!r}"
        )
    problem = _names((aggregate_type, aggregate_id, stored.event_type))
    if problem:
        raise Undecodable(problem)
    problem, event = _content(stored)
    if problem:
        raise Undecodable(problem)
    return stored, event


def _content(stored: Envelope) -> tuple[str, Any]:
    """What is wrong with an envelope's time, event type, schema or payload ("" when
    nothing), and its domain event (None when something is)."""
    try:
        datetime.fromisoformat(stored.occurred_at)  # the pattern let 2026-13-45 through
    except ValueError:
        return f"occurred_at {stored.occurred_at!r} is not a real time", None
    aggregate = _catalogue().aggregates.get(stored.aggregate_type)
    if aggregate is None:
        return f"aggregate type {stored.aggregate_type!r} is unknown to this version", None
    if stored.event_type not in aggregate.event_types:
        return (
            f"event type {stored.event_type!r} of {aggregate.name} is unknown to this version",
            None,
        )
    current = aggregate.schema(stored.event_type)
    if stored.schema > current:
        return f"schema {stored.schema} of {stored.event_type} (this version knows {current})", None
    try:
        return "", aggregate.from_payload(stored.event_type, stored.schema, stored.payload)
    except (msgspec.ValidationError, ValueError, KeyError, TypeError) as exc:
        return f"payload of {stored.event_type} schema {stored.schema}: {str(exc)[:200]}", None


def _catalogue() -> Catalogue:
    global _current
    if _current is None:  # an import statement per event cost ~0.7 us (issue 16, session 9)
        from common import catalogue  # the app's catalogue imports this module

        _current = catalogue.current
    return _current()


_current: Callable[[], Catalogue] | None = None  # common.catalogue.current, once imported


_valid: set[tuple[str, str]] = set()  # (aggregate type, event type) pairs found valid


def _names(names: tuple[str, str, str]) -> str:
    """What is wrong with (aggregate type, aggregate id, event type), or "" when each is a
    valid token. Valid (type, event type) pairs are remembered (up to 4,096; a feed checks
    every delivery), the id is matched every time."""
    aggregate_type, aggregate_id, event_type = names
    if (aggregate_type, event_type) in _valid and ID_PATTERN.fullmatch(aggregate_id):
        return ""  # the pattern bounds the id to 64 characters
    if max(map(len, names)) > 64:
        return "a name over 64 characters"
    if not (EVENT_TYPE.fullmatch(aggregate_type) and ID_PATTERN.fullmatch(aggregate_id)):
        # a subject token no command can make: it would become a selector or a label
        return f"subject tokens {aggregate_type!r}.{aggregate_id!r}"
    if not EVENT_TYPE.fullmatch(event_type):
        return f"event type {event_type!r} is not a snake_case name"
    if len(_valid) >= 4096:
        _valid.clear()
    _valid.add((aggregate_type, event_type))
    return ""


def uuid7(now_ms: int | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562): 48-bit unix ms, version, 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 66 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds and `Z` (`2026-01-01T00:00:00.000000Z`), as
    `occurred_at` holds it."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_envelope(
    aggregate_type: str,
    aggregate_id: str,
    version: int,
    event_type: str,
    payload: dict[str, Any],
    *,
    schema: int = 1,
    occurred_at: str | None = None,
    event_id: str | None = None,
    command_id: str | None = None,
    metadata: Metadata | None = None,
) -> Envelope:
    """The envelope of one new event: `version` is its 1-based position in its aggregate,
    `schema` its event type's payload version, `occurred_at` RFC 3339 UTC (default now),
    `event_id` a UUIDv7 unless given. `metadata` as given, else the command `command_id`
    (default a new UUIDv7) that is its own correlation id. Nothing is checked here: a
    reader checks every field with `decode_stored`."""
    if metadata is None:
        command_id = command_id or uuid7()
        metadata = Metadata(command_id=command_id, correlation_id=command_id)
    return Envelope(
        event_id=event_id or uuid7(),
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        version=version,
        event_type=event_type,
        schema=schema,
        occurred_at=occurred_at or utc_now(),
        payload=payload,
        metadata=metadata,
    )
