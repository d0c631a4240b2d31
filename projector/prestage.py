"""Catch-up batches decoded, checked and staged in the feed process, handed over as columns.

Catching up with the NATS client in a process of its own (`projector/feed_process.py`),
the projector is still one core of Python: per event ~6 µs decoding and checking the
envelope, ~4 µs staging it as Arrow columns (docs/benchmarks.md, "Issue 16, session 11").
Both are pure and need nothing of the read model, so the feed process does them too, with
the same code (`decoding.decode`, `staging.staged`), for the head of each batch (its
share: `FeedProcess.follow` balances it), and sends a `Prestaged` beside the raw
deliveries: the Arrow table of `batch` as an IPC stream, the domain events as msgpack (a
list per aggregate type) and the correlation ids the projector logs. The projector reads
them back and stages the rest itself (`completed`: ~0.7 µs per event for the staged head)
and commits the batch in one transaction (`ReadModel.apply_staged`).

Anything else is the projector's as before: a batch the feed process could not stage
(a message that is not an envelope, a payload that does not fit: no `Prestaged`), one
that does not read back, and one whose commit fails are decoded from the raw deliveries
and applied by `ReadModel.apply`, which isolates the event at fault. The feed process
stages only for a read model of its own app whose projections are all SQL (a Python hook
gets envelopes, which a staged batch does not carry) and whose events msgpack gives back
exactly (`app_of`).
"""

from __future__ import annotations

import functools
import heapq
import sys
from typing import Any, NamedTuple

import msgspec
import msgspec.inspect as inspect
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from common import catalogue as catalogues
from common.app import Aggregate, Unapplicable
from common.settings import app_name
from common.typewalk import RECORDS, walk
from projector.decoding import LOGGED_IDS, decode
from projector.feed import Delivery
from projector.readmodel import ReadModel
from projector.staging import SCHEMA, Checker, Staged, staged

log = structlog.get_logger()


class Prestaged(msgspec.Struct, array_like=True, frozen=True):
    """The head of a batch, staged by the feed process with app package `app`: `table`
    the Arrow IPC stream of `batch` (`staging.SCHEMA`, its first `new_command` as if no
    command came before), `typed` (aggregate type, msgpack list of its domain events in
    stream order) for each of the app's aggregate types in it, `correlation_ids` its
    smallest `LOGGED_IDS`, sorted."""

    app: str
    table: bytes
    typed: list[tuple[str, bytes]]
    correlation_ids: list[str]


class Received(NamedTuple):
    """A `Prestaged` read back: the staged batch and the correlation ids to log."""

    batch: Staged
    correlation_ids: list[str]


def app_of(model: ReadModel) -> str:
    """The app package (`IRONSTAR_APP`) a feed process stages `model`'s batches with, or
    "" when it cannot (logged, `staging_off`, with why: `_unstageable`)."""
    name = app_name()
    why = _unstageable(model, name)
    if why:
        log.info("staging_off", reason=why)
        return ""
    return name


def _unstageable(model: ReadModel, app: str) -> str:
    """Why a feed process cannot stage `model`'s batches with app package `app` ("": it
    can): `model` runs another catalogue, a projection is a Python hook, or events hold a
    type msgpack does not give back exactly (`_faithful`)."""
    if getattr(sys.modules.get(app), "app", None) is not model.catalogue.app:
        return f"the read model runs another app than {app}"
    hooks = [p.name for p in model.projections.values() if not isinstance(p.apply, tuple)]
    if hooks:
        return f"projections {', '.join(sorted(hooks))} are Python hooks"
    aggregates = list(model.catalogue.aggregates.values())
    infos = inspect.multi_type_info([a.events for a in aggregates])
    odd = [a.name for a, info in zip(aggregates, infos, strict=True) if not _faithful(info)]
    if odd:
        return (
            f"the events of {', '.join(sorted(odd))} hold a datetime, time, Raw, custom type "
            "or __post_init__ (msgpack would not give them back exactly)"
        )
    return ""


# What msgpack gives back exactly as msgspec built it from JSON. Not: a `datetime` or
# `time` (one with a UTC offset comes back as the same instant in UTC: +05:30 as +00:00, a
# different `hour` for `evolve`; the type cannot say which), `Raw` (JSON bytes written into
# msgpack), ext and custom types, and a record with `__post_init__` (decoding runs it again:
# verify11 F1, a hook that appends to a field appended twice).
_LEAVES = (
    inspect.AnyType, inspect.NoneType, inspect.BoolType, inspect.IntType, inspect.FloatType,
    inspect.StrType, inspect.BytesType, inspect.ByteArrayType, inspect.DateType,
    inspect.TimeDeltaType, inspect.UUIDType, inspect.DecimalType, inspect.EnumType,
    inspect.LiteralType,
)  # fmt: skip
_CONTAINERS = (
    inspect.UnionType, inspect.TupleType, inspect.CollectionType, inspect.DictType, *RECORDS
)  # fmt: skip


def _faithful(info: inspect.Type) -> bool:
    """Whether every value of type `info` comes back from msgpack as it went in."""
    return all(
        isinstance(part, _LEAVES)
        or (
            isinstance(part, _CONTAINERS)
            and not hasattr(getattr(part, "cls", None), "__post_init__")
        )
        for part in walk(info)
    )


def prestage(app: str, deliveries: list[Delivery]) -> Prestaged | None:
    """`deliveries` decoded, checked and staged with app package `app` (pure); None when
    any of them is a dead letter or does not fit, or the batch cannot be encoded: the
    projector then does it all itself, as for any batch."""
    checker = _checker(app)
    decoded = decode(deliveries)
    if decoded.dead or not deliveries:
        return None
    try:
        batch = staged(checker, decoded.events, "", decoded.typed)
        groups: dict[str, list[Any]] = {}
        for kind, event in zip(batch.kinds, batch.typed, strict=True):
            if event is not None:
                groups.setdefault(kind, []).append(event)
        typed = [(kind, msgspec.msgpack.encode(events)) for kind, events in groups.items()]
    except (Unapplicable, msgspec.EncodeError, OverflowError, TypeError, ValueError):
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.table.schema) as writer:
        writer.write_table(batch.table)
    ids = {e.event.metadata.correlation_id for e in decoded.events}
    table = sink.getvalue().to_pybytes()
    return Prestaged(app, table, typed, heapq.nsmallest(LOGGED_IDS, ids))


def received(pre: Prestaged) -> Received | None:
    """`pre` read back into a staged batch, each event with its domain event; None when it
    does not read back whole (the projector then decodes the raw deliveries)."""
    try:
        aggregates = _catalogue(pre.app).aggregates
        table = pa.ipc.open_stream(pre.table).read_all()
        if table.schema != SCHEMA:
            return None
        kinds = table.column("aggregate_type").to_pylist()
        lists = {kind: _decoder(aggregates[kind]).decode(data) for kind, data in pre.typed}
        if any(len(events) != kinds.count(kind) for kind, events in lists.items()):
            return None
        if any(kind in aggregates and kind not in lists for kind in set(kinds)):
            return None
        events = {kind: iter(found) for kind, found in lists.items()}
        typed = [next(events[kind]) if kind in events else None for kind in kinds]
        batch = Staged(
            table,
            typed,
            table.column("sequence").to_pylist(),
            kinds,
            table.column("aggregate_id").to_pylist(),
            table.column("version").to_pylist(),
            frozenset(pc.unique(table.column("event_type")).to_pylist()),
        )
    except (
        catalogues.AppError,
        pa.ArrowException,
        OSError,
        msgspec.MsgspecError,
        KeyError,
        ValueError,
    ):
        return None
    return Received(batch, pre.correlation_ids)


def completed(pre: Prestaged, deliveries: list[Delivery]) -> Received | None:
    """The batch of `deliveries` staged whole: the first ones as the feed process staged
    them (`pre`: the share it was asked to stage, `FeedProcess.follow`), the rest staged
    here, joined. None when any of it cannot be (the projector then decodes them all)."""
    head = received(pre)
    if head is None:
        return None
    count = len(head.batch.sequences)
    if not count or [d[0] for d in deliveries[:count]] != head.batch.sequences:
        return None  # not the deliveries it says it staged
    rest = deliveries[count:]
    if not rest:
        return head
    decoded = decode(rest)
    if decoded.dead:
        return None
    try:
        tail = staged(_checker(pre.app), decoded.events, head.batch.last_command, decoded.typed)
    except Unapplicable:
        return None
    ids = {e.event.metadata.correlation_id for e in decoded.events}
    ids.update(head.correlation_ids)
    return Received(head.batch.joined(tail), heapq.nsmallest(LOGGED_IDS, ids))


@functools.cache
def _catalogue(app: str) -> catalogues.Catalogue:
    return catalogues.load(app)


@functools.cache
def _checker(app: str) -> Checker:
    return Checker(_catalogue(app))


def _decoder(aggregate: Aggregate) -> msgspec.msgpack.Decoder[list[Any]]:
    return _decoder_of(aggregate.events)


@functools.cache
def _decoder_of(events: Any) -> msgspec.msgpack.Decoder[list[Any]]:
    return msgspec.msgpack.Decoder(list[events])
