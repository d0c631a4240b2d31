"""The only module that builds or parses a NATS subject.

Every token is validated before it becomes part of a subject, so no client input can
inject `.`, `*`, `>` or whitespace into the subject space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import Invalid

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_id(value: str, what: str = "aggregate_id") -> str:
    """`value` when it is a subject token (1-64 of A-Z a-z 0-9 _ -); Invalid (422, field `what`)
    otherwise."""
    if not ID_PATTERN.fullmatch(value):
        raise Invalid(
            f"{what} {value[:80]!r} is invalid: use 1-64 of A-Z, a-z, 0-9, '_' and '-'",
            field=what,
        )
    return value


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject names under one configurable prefix (default `ironstar`)."""

    prefix: str = "ironstar"

    @property
    def all_events(self) -> str:
        """The stream's subjects: every event of every aggregate."""
        return f"{self.prefix}.events.>"

    def events(self, aggregate_type: str, aggregate_id: str | None = None) -> str:
        """The subject of one aggregate, or the wildcard over one type when id is None."""
        if aggregate_id is None:
            return f"{self.prefix}.events.{aggregate_type}.*"
        return f"{self.prefix}.events.{aggregate_type}.{valid_id(aggregate_id)}"

    def command(self, aggregate_type: str) -> str:
        """Where the writers' queue group takes commands for `aggregate_type` (request/reply)."""
        return f"{self.prefix}.cmd.{aggregate_type}"

    def query(self, projection: str) -> str:
        """Where the projectors' queue group answers queries of `projection` (request/reply)."""
        return f"{self.prefix}.query.{projection}"

    def current(self, projection: str) -> str:
        """Where only the caught-up replicas answer what `query(projection)` is asked (the
        gateway asks here first: docs/architecture.md, "Reads go to caught-up replicas")."""
        return f"{self.prefix}.query.current.{projection}"

    @property
    def applied(self) -> str:
        """Where projector replicas announce each committed batch (core NATS, no reply):
        `{"sequence", "tables", "replica"}`; live queries follow it."""
        return f"{self.prefix}.applied"
