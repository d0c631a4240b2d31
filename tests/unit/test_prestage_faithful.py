"""Which domain events the feed process may hand over as msgpack (projector/prestage.py):
only types msgpack gives back exactly as msgspec built them from JSON."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any, Literal

import msgspec
import msgspec.inspect
import pytest

from projector.prestage import _faithful


class Color(enum.Enum):
    RED = "red"


class Inner(msgspec.Struct):
    a: int


class Node(msgspec.Struct):
    kids: list[Node]
    on: datetime.date


class Plain(msgspec.Struct, tag="plain", rename="camel", omit_defaults=True):
    on: datetime.date
    span: datetime.timedelta
    amount: decimal.Decimal
    blob: bytes
    ids: set[int]
    tags: frozenset[str]
    sizes: tuple[int, ...]
    pair: tuple[int, str]
    names: dict[int, str]
    key: uuid.UUID
    color: Color
    kind: Literal["x", "y"]
    ratio: float
    anything: Any
    inner: Inner
    tree: Node | None = None


class Stamped(msgspec.Struct):
    at: datetime.datetime  # +05:30 comes back from msgpack as the same instant in UTC


class Clocked(msgspec.Struct):
    at: list[datetime.time | None]


class Raw(msgspec.Struct):
    raw: msgspec.Raw  # JSON's bytes, written into msgpack as they are


def test_the_types_msgpack_gives_back_exactly_are_handed_over() -> None:
    assert _faithful(msgspec.inspect.type_info(Plain))


@pytest.mark.parametrize("kind", [Stamped, Clocked, Raw, dict[str, Stamped], Stamped | None])
def test_a_time_with_its_offset_or_raw_json_anywhere_in_an_event_is_not(kind: Any) -> None:
    assert not _faithful(msgspec.inspect.type_info(kind))


def test_why_a_time_with_its_offset_is_not() -> None:
    event = msgspec.json.decode(b'{"at": "2026-01-01T00:30:00+05:30"}', type=Stamped)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=Stamped)
    assert back == event and back.at.hour != event.at.hour  # equal instants, not equal times


class Noted(msgspec.Struct):
    text: str

    def __post_init__(self) -> None:  # decoding runs it: from msgpack again (verify11 F1)
        self.text += "!"


def test_an_event_whose_decoding_runs_code_is_not_even_nested() -> None:
    assert not _faithful(msgspec.inspect.type_info(Noted))
    assert not _faithful(msgspec.inspect.type_info(list[Noted] | None))
    once = msgspec.json.decode(b'{"text": "a"}', type=Noted)
    twice = msgspec.msgpack.decode(msgspec.msgpack.encode(once), type=Noted)
    assert (once.text, twice.text) == ("a!", "a!!")  # why
