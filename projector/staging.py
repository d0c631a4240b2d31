"""The staged batch: the events of one batch as the DuckDB relation `batch`.

SQL projections read `batch`, one row per event in stream order, with the columns

| column | type | |
|---|---|---|
| `sequence` | BIGINT | stream sequence (global position) |
| `aggregate_type`, `aggregate_id` | VARCHAR | |
| `event_type` | VARCHAR | |
| `version` | BIGINT | 1-based per aggregate |
| `occurred_at` | TIMESTAMPTZ | |
| `payload` | JSON | in the event type's current schema (older schemas upcast) |
| `metadata` | JSON | `command_id`, `correlation_id`, `causation_id`, `actor` |
| `command_id` | VARCHAR | the command that appended the event |
| `new_command` | BOOLEAN | first event of its command (commands' events are adjacent) |

Every payload is checked against its event type's Struct first: an event of the app's
aggregates whose payload does not fit is `Unapplicable` (a dead letter), so the SQL
never meets a payload it cannot read. The domain events built by that check go to the
built-in `versions` projection (`projector/versions.py`, applied before the app's), which
refuses an event that is not its aggregate's next version, or that its aggregate's
`evolve` refuses given the state before it (an event `decide` could not have made, e.g. a
todo added twice): the same history the writer would refuse.

The batch is registered as an Arrow table; the read model runs with external access off,
which also turns off scanning Python objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, get_args

import duckdb
import msgspec
import pyarrow as pa

from common.app import Aggregate, Unapplicable
from common.catalogue import Catalogue
from common.envelope import Envelope, Stored

VIEW = """CREATE TEMP VIEW IF NOT EXISTS batch AS
    SELECT sequence, aggregate_type, aggregate_id, event_type, version,
           occurred_at::TIMESTAMPTZ AS occurred_at, payload::JSON AS payload,
           metadata::JSON AS metadata, command_id, new_command
    FROM _staged"""
_json = msgspec.json.Encoder()
_NONE: Mapping[int, Any] = {}
_S, _I = pa.string(), pa.int64()
SCHEMA = pa.schema(
    [("sequence", _I), ("aggregate_type", _S), ("aggregate_id", _S), ("event_type", _S),
     ("version", _I), ("occurred_at", _S), ("payload", _S), ("metadata", _S),
     ("command_id", _S), ("new_command", pa.bool_())]
)  # fmt: skip


class Checker:
    """Brings payloads to their current schema and checks them against their Struct.
    Holds nothing of a batch: one checker serves every thread."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._aggregates = catalogue.aggregates
        self._current: dict[tuple[str, str], int] = {  # (aggregate, event type): schema
            (a.name, t): a.schema(t)
            for a in catalogue.aggregates.values()
            for member in _members(a)
            if (t := str(member.__struct_config__.tag))
        }

    def payload(
        self, sequence: int, event: Envelope, known: Any = None
    ) -> tuple[dict[str, Any], Any]:
        """The payload in its current schema and its domain event (None: not the app's).
        `known` is its domain event if built already from the same envelope
        (`common.envelope.decode_checked`): its payload is not converted again.
        Unapplicable (a dead letter of this event) when upcasting or decoding fails."""
        current = self._current.get((event.aggregate_type, event.event_type))
        aggregate = self._aggregates.get(event.aggregate_type)
        if aggregate is None:
            return event.payload, None  # not the app's: the SQL filters it out or reads it
        if known is not None and event.schema == current:  # checked already, as it is
            return event.payload, known
        try:
            if current is None:  # an event type its aggregate does not know: refused here
                aggregate.from_payload(event.event_type, event.schema, event.payload)
                raise ValueError(f"not an event type of {aggregate.name}")
            data = event.payload
            if event.schema < current:
                data = aggregate.upcast(event.event_type, event.schema, data)
            if known is not None:
                return data, known
            return data, aggregate.from_payload(event.event_type, current, data)
        except (msgspec.ValidationError, KeyError, TypeError, ValueError) as exc:
            raise Unapplicable(sequence, f"{event.event_type}: {exc}") from exc


def _members(aggregate: Aggregate) -> tuple[Any, ...]:
    return get_args(aggregate.events) or (aggregate.events,)


class Staged(NamedTuple):
    """A batch staged (`staged`): its `table` (`SCHEMA`, registered by `stage`), and per
    event, in stream order, its domain event (`typed`: None for an event of no aggregate of
    the app) and what the `versions` check walks; `present` holds its event types."""

    table: pa.Table
    typed: list[Any]
    sequences: list[int]
    kinds: list[str]  # aggregate types
    ids: list[str]  # aggregate ids
    versions: list[int]
    present: frozenset[str]

    @property
    def last_command(self) -> str:
        """The command id of the batch's last event."""
        return str(self.table.column("command_id")[-1].as_py())

    def joined(self, tail: Staged) -> Staged:
        """This batch followed by `tail` (staged after this batch's last command)."""
        return Staged(
            pa.concat_tables([self.table, tail.table]),
            self.typed + tail.typed,
            self.sequences + tail.sequences,
            self.kinds + tail.kinds,
            self.ids + tail.ids,
            self.versions + tail.versions,
            self.present | tail.present,
        )

    def event_type(self, sequence: int) -> str:
        """The event type of the batch's event at `sequence` (for an error's message)."""
        return str(self.table.column("event_type")[self.sequences.index(sequence)].as_py())

    def preceded_by(self, command: str) -> Staged:
        """The same batch, its first event's `new_command` as it follows `command` (a batch
        staged in a feed process is staged before the command before it is known)."""
        column = self.table.column("new_command")
        first = self.table.column("command_id")[0].as_py() != command
        if column[0].as_py() == first:
            return self
        fixed = pa.concat_arrays([pa.array([first], pa.bool_()), *column.slice(1).chunks])
        index = self.table.schema.get_field_index("new_command")
        return self._replace(table=self.table.set_column(index, "new_command", fixed))


def staged(
    checker: Checker, events: Sequence[Stored], preceding: str, typed: Mapping[int, Any] = _NONE
) -> Staged:
    """`events` staged (pure): every payload checked (`Checker.payload`: Unapplicable for
    one that does not fit), in its current schema. `preceding` is the command id of the
    event before the batch; `typed` (by sequence) the domain events decoding built."""
    known = typed.get
    checked = [checker.payload(seq, e, known(seq)) for seq, e in events]
    payloads = [_json.encode(data) for data, _ in checked]
    commands = [e.metadata.command_id for _, e in events]
    previous = [preceding, *commands][: len(commands)]
    sequences = [seq for seq, _ in events]
    kinds = [e.aggregate_type for _, e in events]
    ids = [e.aggregate_id for _, e in events]
    versions = [e.version for _, e in events]
    types = [e.event_type for _, e in events]
    table = pa.table(
        {
            "sequence": pa.array(sequences, _I),
            "aggregate_type": pa.array(kinds, _S),
            "aggregate_id": pa.array(ids, _S),
            "event_type": pa.array(types, _S),
            "version": pa.array(versions, _I),
            "occurred_at": pa.array([e.occurred_at for _, e in events], _S),
            "payload": pa.array(payloads, pa.binary()).cast(_S),
            "metadata": pa.array([_json.encode(e.metadata) for _, e in events], pa.binary()).cast(
                _S
            ),
            "command_id": pa.array(commands, _S),
            "new_command": pa.array(
                [c != p for c, p in zip(commands, previous, strict=True)], pa.bool_()
            ),
        }
    )
    events_typed = [event for _, event in checked]
    return Staged(table, events_typed, sequences, kinds, ids, versions, frozenset(types))


def stage(con: duckdb.DuckDBPyConnection, batch: Staged) -> None:
    """Register `batch`'s table as `_staged` (the view `batch` reads it)."""
    con.register("_staged", batch.table)


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the view `batch` on `con` once (inside a transaction that commits), so a
    batch only registers its table: one statement fewer per batch (docs/benchmarks.md,
    "Issue 16, session 7")."""
    con.register("_staged", SCHEMA.empty_table())
    try:
        con.execute(VIEW)
    finally:
        con.unregister("_staged")


def unstage(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the staged batch's Arrow table from `con` (the view `batch` stays, empty of
    meaning until the next `stage`). Never raises a DuckDB error."""
    with contextlib.suppress(duckdb.Error):  # an aborted transaction is rolled back anyway
        con.unregister("_staged")
