"""Shape checks and rule helpers shared by the aggregates (pure: stdlib and msgspec only)."""

from __future__ import annotations

import re

from common.errors import Invalid, RuleViolation

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


class ImpossibleEvent(ValueError):
    """An event `decide` could not have produced on the state it is folded into (a todo
    added twice, a change to a deleted one): history no reader can trust past it."""


def possible(condition: bool, what: str, *args: object) -> None:
    """`evolve`'s check that an event follows from the state (the mirror of `require`):
    `what.format(*args)` is the error, formatted only when raised (`evolve` runs once per
    event whenever a projector catches up: docs/benchmarks.md, "Issue 16, session 8")."""
    if not condition:
        raise ImpossibleEvent(what.format(*args))


def require(condition: bool, rule: str) -> None:
    """A well-formed command that breaks a domain rule is refused with the rule in words."""
    if not condition:
        raise RuleViolation(rule)


def bounded_text(value: str, field: str, limit: int) -> str:
    text = value.strip()
    if not 1 <= len(text) <= limit:
        raise Invalid(
            f"{field} must be 1-{limit} characters after trimming spaces, got {len(text)}",
            field=field,
        )
    return text


def todo_text(value: str) -> str:
    return bounded_text(value, "text", 200)


def todo_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise Invalid(
            "todo_id must be 1-64 characters from A-Z, a-z, 0-9, '_' and '-'", field="todo_id"
        )
    return value


def email(value: str) -> str:
    address = value.strip()
    if len(address) > 254 or not _EMAIL.fullmatch(address):
        raise Invalid(
            f"email {value[:80]!r} is not an address like name@example.com", field="email"
        )
    return address
