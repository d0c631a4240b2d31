"""The built-in `versions` check: each event is its aggregate's next version and its
aggregate's `evolve` accepts it, given the state before it.

Cost is what shaped this module. Writing every touched aggregate's state with every batch
(msgspec JSON, one upsert) made the check cost O(aggregates touched x state size) per batch,
more than all the SQL projections together, and more per event the more aggregates a
history has (docs/benchmarks.md). So:

- States live decoded in memory (`_cache`, least recently used first; at most `cached`
  aggregates, only ones whose state is also in the file are ever dropped). While none was
  dropped since a start on an empty `aggregate_states` (a rebuild, a new replica), an
  aggregate not in memory has no state: its batch reads nothing (a join that scans the
  table, a cost per batch growing with the aggregates).
- Each batch appends its events (one `INSERT … SELECT` from the staged `batch`: sequence,
  aggregate, version, event type, payload in the current schema) to `aggregate_pending`,
  in the batch's transaction: what the file needs to know the states at its checkpoint.
- Every `flush_events` events, or every `PER_STATE` (2) events per aggregate in memory if
  that is more (or when the cache is full of unwritten states), the changed states are
  written to `aggregate_states` and `aggregate_pending` is emptied, in the transaction of
  that batch; each aggregate is written once per flush, not once per batch. A write thus
  costs at most half a state per event, however many aggregates a history has; at a fixed
  50,000 events it cost (aggregates touched since the last write) / 50,000 states per
  event, 2.3x more at 5M events than at 1M in the bench's history (docs/benchmarks.md,
  "Issue 16, session 7").
- After a restart, the first batch first folds the events in `aggregate_pending` onto the
  written states (at most max(`flush_events`, 2 x `cached`) events; ~1 s per 12,000
  events of the example's long lists on the loaded test machine), so it is checked with
  the states of its checkpoint. Lazily, so a replica is ready and answers queries at once.

A batch's changes reach the cache only after its commit (`committed`); a rolled back batch
leaves the cache as it was (`rolled_back`). The view `aggregate_versions` gives every
aggregate's last version.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import structlog

from common.app import Aggregate, Unapplicable
from projector.staging import Staged

log = structlog.get_logger()
Key = tuple[str, str]  # aggregate type, aggregate id
Entry = tuple[int, Any]  # last version, state (None until an app aggregate's first event)
CACHED = 200_000  # aggregates whose state is kept decoded in memory
FLUSH_EVENTS = 50_000  # events in aggregate_pending before the states are written ...
PER_STATE = 2  # ... or this many per aggregate in memory, if more
_S = pa.string()
_json = msgspec.json.Encoder()
_ERRORS = (msgspec.ValidationError, KeyError, TypeError, ValueError)
_NEW: Entry = (0, None)  # an aggregate with no event yet

PENDING = """INSERT INTO aggregate_pending
    SELECT sequence, aggregate_type, aggregate_id, version, event_type, payload::VARCHAR
    FROM batch"""


class Versions:
    """The `versions` check over `aggregates` (by type name): states of at most `cached`
    aggregates in memory (default `CACHED`), written every `flush_events` events (default
    `FLUSH_EVENTS`); see the module docstring. One writer thread at a time."""

    def __init__(
        self,
        aggregates: Mapping[str, Aggregate],
        cached: int | None = None,
        flush_events: int | None = None,
    ) -> None:
        self._aggregates = aggregates
        self._kinds = {name: (a.evolve, a.initial) for name, a in aggregates.items()}
        self._cached = CACHED if cached is None else cached
        self._flush_events = FLUSH_EVENTS if flush_events is None else flush_events
        self._cache: OrderedDict[Key, Entry] = OrderedDict()
        self._dirty: set[Key] = set()  # states changed since they were written
        self._pending = 0  # rows in aggregate_pending
        self._open: dict[Key, Entry] | None = None  # the open transaction's changes
        self._events = 0  # and how many events it logged
        self._flushing = False  # the open transaction writes the states
        self._full = False  # write the states with the next batch (`write_next`, a full cache)
        self._loaded = False  # the events logged since the last write are folded
        self._whole = False  # no aggregate outside `_cache` has a written state

    @property
    def aggregates(self) -> int:
        """How many aggregates' states are in memory (at most `cached`): after a rebuild's
        first pass, every aggregate of the history up to that bound."""
        return len(self._cache)

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Fold the events appended since the states were last written (after a restart)."""
        rows = con.execute(
            """SELECT aggregate_type, aggregate_id, version, event_type, payload
               FROM aggregate_pending ORDER BY sequence"""
        ).fetchall()
        states = self._read(con, {(kind, key) for kind, key, *_ in rows})
        for kind, key, version, event_type, payload in rows:
            _, state = states.get((kind, key), (0, None))
            aggregate = self._aggregates.get(kind)
            if aggregate is not None:
                try:
                    event = aggregate.from_payload(
                        event_type, aggregate.schema(event_type), msgspec.json.decode(payload)
                    )
                    state = aggregate.evolve(aggregate.initial if state is None else state, event)
                except _ERRORS as exc:  # accepted before: this version's evolve differs
                    log.warning("versions_refold", aggregate=kind, id=key, error=str(exc))
            states[(kind, key)] = (version, state)
        self._cache.update(states)
        self._dirty = {(kind, key) for kind, key, *_ in rows}
        self._pending = len(rows)
        self._loaded = True
        self._whole = not con.execute("SELECT count(*) FROM aggregate_states").fetchall()[0][0]

    def fold(self, con: duckdb.DuckDBPyConnection, batch: Staged) -> None:
        """Raise `Unapplicable` at the first event of the staged `batch` out of its
        aggregate's order or refused by its `evolve`; else log the batch (or write the
        states). Needs the staged `batch` registered (`projector/staging.py`)."""
        if not self._loaded:
            self.load(con)
        cache = self._cache
        if not self._whole:  # an aggregate not in memory may have a written state
            missing = set(zip(batch.kinds, batch.ids, strict=True)) - cache.keys()
            if missing:  # committed states (clean); an aggregate never written has none yet
                found = self._read(con, missing)  # a join that scans the table
                cache.update({key: found.get(key, _NEW) for key in missing})
        changed: dict[Key, Entry] = {}
        was, known, kinds = changed.get, cache.get, self._kinds  # per event: no lookups more
        rows = zip(
            batch.sequences, batch.kinds, batch.ids, batch.versions, batch.typed, strict=True
        )
        for sequence, kind_name, aggregate_id, number, event in rows:
            key = (kind_name, aggregate_id)
            version, state = was(key) or known(key) or _NEW  # an entry is a non-empty tuple
            if number != version + 1:
                raise Unapplicable(
                    sequence,
                    f"version {number} of {kind_name} {aggregate_id!r}: its next is {version + 1}",
                )
            kind = kinds.get(kind_name)
            if kind is not None:  # staging built its domain event (or refused it)
                evolve, initial = kind
                try:
                    state = evolve(initial if state is None else state, event)
                except _ERRORS as exc:
                    raise Unapplicable(sequence, f"{batch.event_type(sequence)}: {exc}") from exc
            changed[key] = (number, state)
        self._open, self._events, self._flushing = changed, len(batch.sequences), False
        if self._full or self._pending + self._events >= self._every(changed):
            self._write(
                con,
                {k: changed[k] if k in changed else cache[k] for k in self._dirty | changed.keys()},
            )
            self._flushing = True
        else:
            con.execute(PENDING)

    def write_next(self) -> None:
        """Write the states with the next batch, whatever its size: the projector calls it
        for a catch-up's last batch, so the live tail that follows starts with no states
        to write (docs/architecture.md, "Issue 16, session 9")."""
        self._full = True

    def _every(self, changed: Mapping[Key, Entry]) -> int:
        """Events logged before the states are written: `flush_events`, or `PER_STATE`
        times the aggregates in memory if more, so a write (of those changed since the
        last) costs at most half a state per event, and about as many per event at 5M
        events as at 1M (docs/architecture.md)."""
        fresh = sum(1 for key in changed if key not in self._cache)
        return max(self._flush_events, PER_STATE * (len(self._cache) + fresh))

    def committed(self) -> None:
        """The transaction that folded the last batch committed: keep its states."""
        if self._open is None:
            return
        cache = self._cache
        for key, entry in self._open.items():
            cache[key] = entry
            cache.move_to_end(key)
        if self._flushing:
            self._dirty.clear()
            self._pending, self._full = 0, False
        else:
            self._dirty.update(self._open)
            self._pending += self._events
        self._open = None
        while len(cache) > self._cached:
            oldest = next(iter(cache))
            if oldest in self._dirty:
                self._full = True  # written with the next batch, then dropped
                break
            del cache[oldest]
            self._whole = False  # its written state is now only in the file

    def rolled_back(self) -> None:
        """The transaction that folded the last batch rolled back: forget its states."""
        self._open, self._flushing = None, False

    def _read(self, con: duckdb.DuckDBPyConnection, keys: Iterable[Key]) -> dict[Key, Entry]:
        """The written version and state of `keys` (absent: never written)."""
        kinds, ids = zip(*keys, strict=True) if keys else ((), ())
        if not kinds:
            return {}
        con.register("_keys", pa.table({"t": pa.array(kinds, _S), "i": pa.array(ids, _S)}))
        try:
            rows = con.execute(
                """SELECT s.aggregate_type, s.aggregate_id, s.version, s.state
                   FROM aggregate_states AS s JOIN _keys AS k
                   ON s.aggregate_type = k.t AND s.aggregate_id = k.i"""
            ).fetchall()
        finally:
            con.unregister("_keys")
        found: dict[Key, Entry] = {}
        for kind, key, version, text in rows:
            aggregate = self._aggregates.get(kind)
            state = None
            if aggregate is not None and text is not None:
                state = msgspec.json.decode(text, type=type(aggregate.initial))
            found[(kind, key)] = (version, state)
        return found

    def _write(self, con: duckdb.DuckDBPyConnection, entries: Mapping[Key, Entry]) -> None:
        rows = [(k[0], k[1], v, None if s is None else _json.encode(s).decode())
                for k, (v, s) in entries.items()]  # fmt: skip
        kinds, ids, versions, texts = zip(*rows, strict=True) if rows else ((),) * 4
        table = pa.table(
            {
                "aggregate_type": pa.array(kinds, _S),
                "aggregate_id": pa.array(ids, _S),
                "version": pa.array(versions, pa.int64()),
                "state": pa.array(texts, _S),
            }
        )
        con.register("_states", table)
        try:
            con.execute(
                """INSERT INTO aggregate_states SELECT * FROM _states
                   ON CONFLICT DO UPDATE SET version = excluded.version, state = excluded.state"""
            )
            con.execute("DELETE FROM aggregate_pending")
        finally:
            con.unregister("_states")
