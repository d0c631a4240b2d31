"""The example domain and its registry of aggregates.

Each aggregate module is a pure core: tagged command and event unions, an initial state,
`decide(state, command) -> list[event]` and `evolve(state, event) -> state`. `Aggregate`
wraps a module with the codecs every service needs (command from JSON, event to and from
an envelope payload, fold), so services never touch aggregate-specific code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec

from common.domain import todo_list, user_profile
from common.domain.upcasting import upcast
from common.errors import Invalid, NotFound, invalid_from_msgspec


def _by_tag(union: Any) -> dict[str, type]:
    return {str(member.__struct_config__.tag): member for member in get_args(union)}


@dataclass(frozen=True)
class Aggregate:
    name: str
    initial: Any
    decide: Callable[[Any, Any], list[Any]]
    evolve: Callable[[Any, Any], Any]
    commands: Any
    events: Any
    schemas: dict[str, int]
    critical: frozenset[str] = frozenset()
    command_types: frozenset[str] = field(init=False)
    event_types: frozenset[str] = field(init=False)
    _event_structs: dict[str, type] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "command_types", frozenset(_by_tag(self.commands)))
        object.__setattr__(self, "_event_structs", _by_tag(self.events))
        object.__setattr__(self, "event_types", frozenset(self._event_structs))

    def command(self, command_type: str, payload: Any) -> Any:
        """Build a command from its JSON parts: 404 for an unknown type, 422 for a bad shape."""
        if command_type not in self.command_types:
            known = ", ".join(sorted(self.command_types))
            raise NotFound(
                f"{self.name} has no command {command_type[:80]!r}; known: {known}", field="type"
            )
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise Invalid("payload must be a JSON object", field="payload")
        try:
            return msgspec.convert({**payload, "type": command_type}, self.commands)
        except msgspec.ValidationError as exc:
            raise invalid_from_msgspec(exc, f"{command_type} payload") from None

    def schema(self, event_type: str) -> int:
        return self.schemas.get(event_type, 1)

    def to_payload(self, event: Any) -> tuple[str, dict[str, Any]]:
        payload = msgspec.to_builtins(event)
        return payload.pop("event_type"), payload

    def from_payload(self, event_type: str, schema: int, payload: dict[str, Any]) -> Any:
        """The domain event of a stored payload (upcast to the current schema); raises
        msgspec.ValidationError (a ValueError) for a payload outside the event's struct,
        KeyError for an unknown event type."""
        current = upcast(event_type, schema, self.schema(event_type), payload)
        # To the type's own struct: a tenth of the cost of converting to the tagged union.
        return msgspec.convert(current, self._event_structs[event_type])

    def fold(self, events: Iterable[Any], state: Any = None) -> Any:
        state = self.initial if state is None else state
        for event in events:
            state = self.evolve(state, event)
        return state


AGGREGATES: dict[str, Aggregate] = {
    aggregate.name: aggregate
    for aggregate in (
        Aggregate(
            name="todo_list",
            initial=todo_list.INITIAL,
            decide=todo_list.decide,
            evolve=todo_list.evolve,
            commands=todo_list.Command,
            events=todo_list.Event,
            schemas=todo_list.SCHEMAS,
            critical=frozenset({"todo_deleted"}),
        ),
        Aggregate(
            name="user_profile",
            initial=user_profile.INITIAL,
            decide=user_profile.decide,
            evolve=user_profile.evolve,
            commands=user_profile.Command,
            events=user_profile.Event,
            schemas=user_profile.SCHEMAS,
            critical=frozenset({"user_deactivated"}),
        ),
    )
}

CRITICAL_EVENT_TYPES = frozenset().union(*(a.critical for a in AGGREGATES.values()))


def aggregate(name: str) -> Aggregate:
    found = AGGREGATES.get(name)
    if found is None:
        known = ", ".join(sorted(AGGREGATES))
        raise NotFound(
            f"unknown aggregate type {name[:80]!r}; known: {known}", field="aggregate_type"
        )
    return found
