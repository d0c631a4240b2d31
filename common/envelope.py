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
from datetime import UTC, datetime
from typing import Any

import msgspec

from common.subjects import ID_PATTERN


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    command_id: str
    correlation_id: str
    causation_id: str | None = None
    actor: str | None = None
    fingerprint: str | None = None  # of the command (type, payload, actor): see writer/handler


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    schema: int
    occurred_at: str
    payload: dict[str, Any]
    metadata: Metadata


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """An envelope with its stream sequence: what queries and feeds hand out."""

    sequence: int
    event: Envelope


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
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
    not an envelope, names another aggregate than its subject, has a version below 1, or
    an event type that is not a snake_case name (so none of them can carry a line break,
    a selector or a wildcard into an SSE field, a page or a metric label).
    """
    try:
        stored = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Undecodable(f"not an event envelope ({exc})") from None
    if (stored.aggregate_type, stored.aggregate_id) != (aggregate_type, aggregate_id):
        raise Undecodable(
            f"an envelope of {stored.aggregate_type[:64]!r}.{stored.aggregate_id[:64]!r} "
            f"on the subject of {aggregate_type[:64]!r}.{aggregate_id[:64]!r}"
        )
    if stored.version < 1:
        raise Undecodable(f"version {stored.version} (versions start at 1)")
    problem = _names((aggregate_type, aggregate_id, stored.event_type))
    if problem:
        raise Undecodable(problem)
    return stored


_checked: dict[tuple[str, str, str], str] = {}  # a feed checks every delivery: once per name


def _names(names: tuple[str, str, str]) -> str:
    """What is wrong with (aggregate type, aggregate id, event type), or "" when each is a
    valid token. Answers are kept for up to 4,096 triples of names of at most 64 characters."""
    problem = _checked.get(names)
    if problem is not None:
        return problem
    aggregate_type, aggregate_id, event_type = names
    if max(map(len, names)) > 64:
        return "a name over 64 characters"
    if not (EVENT_TYPE.fullmatch(aggregate_type) and ID_PATTERN.fullmatch(aggregate_id)):
        # a subject token no command can make: it would become a selector or a label
        problem = f"subject tokens {aggregate_type!r}.{aggregate_id!r}"
    elif not EVENT_TYPE.fullmatch(event_type):
        problem = f"event type {event_type!r} is not a snake_case name"
    else:
        problem = ""
    if len(_checked) >= 4096:
        _checked.clear()
    _checked[names] = problem
    return problem


def uuid7(now_ms: int | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562): 48-bit unix ms, version, 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 66 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
