"""A feed's topics (pure): what `?topics=` asks for, in canonical form, and the consumer
name it gives a client.

`todo_list:abc,user_profile` is two topics: one aggregate of a type, and every aggregate of
another. Their canonical form (no duplicates, a type covering its own ids, sorted) makes
equal feeds share one consumer name, and never gives JetStream overlapping filter subjects,
which it refuses (error 10138).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from common import catalogue
from common.errors import Invalid
from common.subjects import valid_id


@dataclass(frozen=True, slots=True)
class Topic:
    """One part of a feed's `topics`: an aggregate type, and one id of it or None for all of its
    aggregates; `str()` is its canonical `type[:id]` form."""

    aggregate_type: str
    aggregate_id: str | None = None

    def __str__(self) -> str:
        return self.aggregate_type + (f":{self.aggregate_id}" if self.aggregate_id else "")


def parse_topics(value: str | None, max_topics: int = 32) -> tuple[Topic, ...]:
    """`todo_list:abc,user_profile` → topics in canonical form; empty means every aggregate.

    Normalised so that equal feeds get one consumer name and JetStream never sees filters
    that overlap (it refuses them, err 10138): duplicates go, a type covers its own ids
    (`todo_list,todo_list:abc` is `todo_list`), and the order is sorted. An unknown type
    or a malformed part is a 422 naming `topics`; more than `max_topics` left is a 429.
    """
    if not value:
        return ()
    parts = value.split(",")
    if len(parts) > 4 * max_topics:  # bound the work before looking at each part
        raise _too_many(max_topics, len(parts))
    topics = set()
    for part in parts:
        aggregate_type, _, ident = part.strip().partition(":")
        aggregates = catalogue.current().aggregates
        if aggregate_type not in aggregates:
            known = ", ".join(sorted(aggregates))
            raise Invalid(
                f"topics: unknown aggregate type {aggregate_type[:80]!r} in {part[:100]!r}; "
                f"use type or type:id, comma separated (types: {known})",
                field="topics",
            )
        topics.add(Topic(aggregate_type, valid_id(ident, "topics") if ident else None))
    wide = {t.aggregate_type for t in topics if t.aggregate_id is None}
    kept = sorted(
        (t for t in topics if t.aggregate_id is None or t.aggregate_type not in wide), key=str
    )
    if len(kept) > max_topics:
        raise _too_many(max_topics, len(kept))
    return tuple(kept)


def _too_many(max_topics: int, count: int) -> Invalid:
    # never a 429: asking again can never succeed (attack15 F6)
    return Invalid(
        f"at most {max_topics} topics per feed, got {count}; "
        "subscribe to the aggregate type instead of single ids",
        field="topics",
    )


def consumer_name(client_id: str, topics: tuple[Topic, ...], owner: str = "") -> str:
    """`sse_[<owner>_]<client_id>_<topics hash>`: the owner (gateway/feed/consumers.py) binds
    the consumer to one principal when auth is on."""
    digest = hashlib.sha256(",".join(map(str, topics)).encode()).hexdigest()[:12]
    return f"sse_{owner}_{client_id}_{digest}" if owner else f"sse_{client_id}_{digest}"
