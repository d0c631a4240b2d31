"""One aggregate's declarations, as `Catalogue.check` sees them.

`decide` and `evolve` plain functions that return their result; commands and events
msgspec Structs tagged on `type` / `event_type` with unique text tags, no event holding a
dict keyed by anything JSON does not give back from its text keys; `initial` an
instance msgspec encodes and reads back as its type; `critical` event types of its own;
`schemas` ints ≥ 1 with an upcaster for every step below each, and every upcaster within
its type's schemas. What spans aggregates (an event type in two) is `common.checks`'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, get_args

import msgspec
import msgspec.inspect as inspect

from common.app import Aggregate
from common.checks_functions import gives_awaitable, plain
from common.checks_names import one_line
from common.typewalk import walk


def aggregate_problems(aggregate: Aggregate) -> Iterator[str]:
    """Every problem of `aggregate`'s own declarations, one line each, in the order the
    module docstring lists them; the stored shapes are read only once the types hold."""
    where = f"aggregate {aggregate.name}"
    for role in ("decide", "evolve"):
        function = getattr(aggregate, role)
        found = list(plain(f"{where}: {role}", function, "(state, message)"))
        yield from found
        if not found and gives_awaitable(function, aggregate.initial, None):
            yield (
                f"{where}: {role} returns a coroutine (a plain function calling an async one?); "
                "it must return its result, it is never awaited"
            )
    yield from _union(where, "command", aggregate.commands, "type")
    events = list(_union(where, "event", aggregate.events, "event_type"))
    yield from events or _keys(where, aggregate.events)
    shapes = {"critical": (frozenset, "a frozenset of event types"),
              "schemas": (Mapping, "a dict {event_type: current schema}"),
              "upcasters": (Mapping, "a dict {(event_type, schema): function}")}  # fmt: skip
    wrong = [f"{where}: {role} must be {what}" for role, (expected, what) in shapes.items()
             if not isinstance(getattr(aggregate, role), expected)]  # fmt: skip
    if wrong:
        yield from wrong
        return
    state = type(aggregate.initial)
    try:  # the projector stores each state as msgspec JSON and reads it back as this type
        msgspec.json.decode(msgspec.json.encode(aggregate.initial), type=state)
    except (TypeError, msgspec.ValidationError, msgspec.EncodeError) as exc:
        yield (
            f"{where}: initial must be an instance of its state Struct (msgspec encodes it "
            f"and reads it back), got a {state.__name__}: {one_line(exc)}"
        )
    for event_type in sorted(aggregate.critical - aggregate.event_types):
        yield f"{where}: critical event type {event_type} is not one of its events"
    yield from _schemas(where, aggregate)
    yield from _upcasters(where, aggregate)


def _union(where: str, what: str, union: Any, field: str) -> Iterator[str]:
    tags: list[str] = []
    for member in get_args(union) or (union,):
        if not (isinstance(member, type) and issubclass(member, msgspec.Struct)):
            yield f"{where}: {what} type {member!r} is not a msgspec Struct"
            continue
        config = member.__struct_config__
        if config.tag_field != field or not isinstance(config.tag, str):
            yield (
                f'{where}: {what} {member.__name__} needs tag_field="{field}" and a text tag '
                f'(class {member.__name__}(Struct, tag="...", tag_field="{field}"))'
            )
            continue
        if config.tag in tags:
            yield f"{where}: two {what} types have the tag {config.tag!r}"
        tags.append(config.tag)


def _keys(where: str, events: Any) -> Iterator[str]:
    """No event holds a dict whose keys are not text once stored: an event is stored as
    JSON, whose object keys are strings, and read back strictly (`Aggregate.from_payload`),
    which refuses "1" for an int key: every such event would be every reader's dead letter
    (verify11 F2)."""
    for member in get_args(events) or (events,):
        for part in walk(inspect.type_info(member)):
            if isinstance(part, inspect.DictType) and not _text(part.key_type):
                yield (
                    f"{where}: event {member.__name__} holds a dict keyed by "
                    f"{type(part.key_type).__name__.removesuffix('Type').lower()}; stored "
                    "events are JSON, whose keys are text: key it by str (or a str Enum, "
                    "Literal of str, UUID, date)"
                )
                break


def _text(key: inspect.Type) -> bool:
    """Whether dict keys of this type read back from JSON's text keys."""
    if isinstance(key, inspect.EnumType):
        return all(isinstance(member.value, str) for member in key.cls)
    if isinstance(key, inspect.LiteralType):
        return all(isinstance(value, str) for value in key.values)
    if isinstance(key, inspect.UnionType):
        return all(map(_text, key.types))
    return not isinstance(key, inspect.IntType | inspect.FloatType | inspect.BoolType)


def _schemas(where: str, aggregate: Aggregate) -> Iterator[str]:
    """Each schema is an int ≥ 1 of a known event type, with an upcaster for every step
    below it (a stored payload of any older schema must reach the current one)."""
    for event_type, current in aggregate.schemas.items():
        if event_type not in aggregate.event_types:
            yield f"{where}: schema given for unknown event type {event_type}"
        if type(current) is not int or current < 1:
            yield f"{where}: schema of {event_type} must be an int ≥ 1, got {current!r}"
            continue
        for schema in range(1, current):
            if (event_type, schema) not in aggregate.upcasters:
                yield f"{where}: no upcaster for {event_type} schema {schema} → {schema + 1}"


def _upcasters(where: str, aggregate: Aggregate) -> Iterator[str]:
    """Each upcaster is keyed (event type, schema) within that type's schemas, and plain."""
    for key, step in aggregate.upcasters.items():
        event_type, schema = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
        current = aggregate.schemas.get(event_type, 1)
        if event_type not in aggregate.event_types:
            yield f"{where}: upcaster for unknown event type {event_type!r}"
        elif type(schema) is not int or not 1 <= schema < current:
            yield (
                f"{where}: upcaster {event_type} {schema!r} → next is outside its schemas "
                f"1..{current} (schemas={{{event_type!r}: {current}}})"
            )
        yield from plain(f"{where}: upcaster {event_type} {schema!r}", step, "(payload)")
