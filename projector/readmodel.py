"""The DuckDB read model: one file per replica, rows and checkpoint in one transaction.

The database is opened locked down: no file or network access, no extension loading, and
its configuration frozen, so the ad-hoc SQL that queries run over it cannot reach outside
it. The projector needs none of that: batches arrive as registered Arrow tables.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import structlog

from common import catalogue as catalogues
from common import envelope as codec
from common.app import Projection, Unapplicable
from common.builtin import ALWAYS
from common.envelope import Envelope, Stored
from common.errors import StorageFull, storage_exhausted
from common.subjects import Subjects
from projector import snapshot
from projector.projection import Failed, answer
from projector.projection import apply as apply_projections
from projector.staging import Checker
from projector.versions import Versions

log = structlog.get_logger()

LOCKED_DOWN = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "allow_community_extensions": "false",
    "python_enable_replacements": "false",  # no query reads a Python variable by its name
    # One budget for the projector and its queries: a query that needs more fails alone.
    "memory_limit": "2GB",
    "max_temp_directory_size": "4GB",
    "lock_configuration": "true",
    # A checkpoint rewrites every row group an UPDATE touched since the last one, and batches
    # touch rows all over a table: at the default 16 MB of WAL the commits' checkpoints
    # cost O(table) every few batches, a rebuild's time growing with the square of the
    # history (3.1 vs 0.5 µs per event over the last 200,000 of 1M, docs/benchmarks.md).
    "checkpoint_threshold": "256MB",
    # One thread: on a small machine the writer competes with the NATS client and server
    # for cores, and DuckDB's parallel operators cost more than they gain on 1,000 rows.
    "threads": "1",
}

_META_DDL = (
    """CREATE TABLE IF NOT EXISTS checkpoint (
        id INTEGER PRIMARY KEY, sequence BIGINT NOT NULL, command_id VARCHAR NOT NULL)""",
    # Files of the walking skeleton have no command_id: add it (their projections rebuild).
    "ALTER TABLE checkpoint ADD COLUMN IF NOT EXISTS command_id VARCHAR DEFAULT ''",
    "CREATE TABLE IF NOT EXISTS projection_versions (name VARCHAR PRIMARY KEY, version INTEGER)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        sequence BIGINT NOT NULL, subject VARCHAR, error VARCHAR, data BLOB,
        recorded_at TIMESTAMPTZ DEFAULT current_timestamp,
        projection VARCHAR NOT NULL DEFAULT '*', PRIMARY KEY (sequence, projection))""",
)
# Files before per-projection dead letters keyed them by sequence alone: copy them over.
_DEAD_LETTERS_V1 = (
    "ALTER TABLE dead_letters RENAME TO dead_letters_v1",
    _META_DDL[-1],
    """INSERT INTO dead_letters (sequence, subject, error, data, recorded_at)
       SELECT sequence, subject, error, data, recorded_at FROM dead_letters_v1""",
    "DROP TABLE dead_letters_v1",
)
EVERY = "*"  # the projection of a dead letter that no projection applied


class DeadLetter(NamedTuple):
    """An event `projection` did not apply (`EVERY`: none did), and why."""

    sequence: int
    subject: str
    error: str
    data: bytes  # the stored body
    projection: str = EVERY


class Poisoned(Exception):
    """An event could not be decoded or applied and the replica is set to halt."""


# Failures of the machine, never blamed on an event (anything else raised while applying a
# batch is isolated to the event that causes it and dead-lettered).
_MACHINE = (
    StorageFull,
    MemoryError,
    duckdb.OutOfMemoryException,
    duckdb.IOException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.ConnectionException,
    Poisoned,
)
_SUBJECTS = Subjects()  # the default prefix, for an event applied without its subject


@dataclass
class _Batch:
    projections: list[Projection]
    subjects: Mapping[int, str]  # sequence -> stream subject
    halt: bool
    dead: list[DeadLetter] = field(default_factory=list)  # recorded so far


def checkpoint_of(cursor: duckdb.DuckDBPyConnection) -> int:
    """The checkpoint as the cursor's transaction sees it."""
    return int(cursor.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchall()[0][0])


class ReadModel:
    """Owns the DuckDB connection; `apply` is called from one thread at a time."""

    def __init__(
        self,
        path: Path,
        projections: Sequence[Projection] | None = None,
        catalogue: catalogues.Catalogue | None = None,
    ) -> None:
        catalogue = catalogue or catalogues.current()
        if projections is None:
            projections = tuple(catalogue.projections.values())
        self.path = path
        self.projections = {p.name: p for p in projections}
        self.checker = Checker(catalogue)
        self.versions = Versions(catalogue.aggregates)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), config=dict(LOCKED_DOWN))
        self._write = threading.Lock()
        with self._write:
            self.con.execute("BEGIN")
            for statement in _META_DDL:
                self.con.execute(statement)
            columns = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'dead_letters'"
            if ("projection",) not in self.con.execute(columns).fetchall():
                for statement in _DEAD_LETTERS_V1:
                    self.con.execute(statement)
            self.con.execute("INSERT OR IGNORE INTO checkpoint VALUES (1, 0, '')")
            self.checkpoint = self._read_checkpoint()
            if not self.stale():  # a stale file is only read until its rebuild swaps in
                for projection in projections:
                    for statement in projection.ddl:
                        self.con.execute(statement)
                    self._set_version(projection)
            self.con.execute("COMMIT")
        found = self.con.execute("SELECT command_id FROM checkpoint WHERE id = 1").fetchall()
        self._command = str(found[0][0])
        self.changed: frozenset[str] = frozenset()  # tables the last `apply` changed

    def _read_checkpoint(self) -> int:
        found = self.con.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchall()
        return int(found[0][0]) if found else 0

    def _set_version(self, projection: Projection) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO projection_versions VALUES (?, ?)",
            [projection.name, projection.version],
        )

    def stale(self) -> list[str]:
        """Projections whose tables in this file were built by another code version (or
        are missing from a file that has applied events already)."""
        stored = dict(self.con.execute("SELECT name, version FROM projection_versions").fetchall())
        return [
            p.name
            for p in self.projections.values()
            if stored.get(p.name, None if self.checkpoint == 0 else -1) not in (None, p.version)
        ]

    def apply(
        self,
        events: Sequence[tuple[int, Envelope]],
        last_sequence: int,
        dead: Sequence[DeadLetter] = (),
        halt: bool = False,
        only: Collection[str] | None = None,
        subjects: Mapping[int, str] | None = None,
    ) -> list[DeadLetter]:
        """Apply a batch of `(sequence, envelope)` pairs (`Stored` records or plain tuples, in
        stream order) and move the checkpoint to `last_sequence`, all in one transaction.

        Events at or below the checkpoint were applied before and are skipped; the
        checkpoint advances even if nothing changes. An event that cannot be applied (a
        projection raises `Unapplicable`, or applying the batch fails for a reason that can
        come from its data: a DuckDB conversion or constraint error, an Arrow overflow, ...)
        is isolated, by applying the batch in halves, each committed with its checkpoint,
        down to the one event. When one projection raised (`Failed`, or `Unapplicable` from a
        hook), the event is that projection's dead letter and every other projection applies
        it, in a transaction of its own (a next projection raising on it joins the first);
        when no projection can have it (undecodable, a payload its Struct refuses, refused by
        the `versions` check) it is a dead letter of every projection (`EVERY`). A dead letter
        holds its full stream subject from `subjects`, by sequence, and the projection; the
        rest of the batch is applied. With `halt`, the events before it
        are applied, the checkpoint stops just before it and `Poisoned` is raised. Errors
        of the machine (a full disk, memory, I/O, an interrupt) are raised as they are.
        Returns the dead letters. The caller acks the stream only after this returns.
        `changed` then names the tables it changed (lower case; `checkpoint` included).
        """
        self.changed = frozenset()
        if last_sequence <= self.checkpoint:
            return []
        fresh = [Stored._make(e) for e in events if e[0] > self.checkpoint]
        dead = [d for d in dead if d.sequence > self.checkpoint]
        projections = [
            p
            for p in self.projections.values()
            if only is None or p.name in only or p.name in ALWAYS
        ]
        batch = _Batch(projections, subjects or {}, halt)
        try:
            self._settle(batch, fresh, dead, last_sequence)
        finally:
            for letter in batch.dead:
                log.error(
                    "dead_letter",
                    sequence=letter.sequence,
                    subject=letter.subject,
                    projection=letter.projection,
                    error=letter.error,
                )
        return batch.dead

    def _settle(
        self, batch: _Batch, events: list[Stored], dead: list[DeadLetter], last: int
    ) -> None:
        """Commit `events` and `dead` up to `last`, isolating the events that fail."""
        while True:
            if batch.halt and dead:
                first = dead[0].sequence
                self._settle(batch, [e for e in events if e.sequence < first], [], first - 1)
                raise Poisoned(f"sequence {first}: {dead[0].error}")
            try:
                if last > self.checkpoint:
                    self._commit(batch.projections, events, last, dead)
                    self.checkpoint = last
                batch.dead.extend(dead)
                return
            except _MACHINE:
                raise
            except Exception as exc:  # from the data: isolate the event that raises it
                found = _blame(exc, events)
                if found is None:
                    if not events:
                        raise
                    middle = events[len(events) // 2 - 1].sequence
                    left = [d for d in dead if d.sequence <= middle]
                    self._settle(batch, [e for e in events if e.sequence <= middle], left, middle)
                    events = [e for e in events if e.sequence > middle]
                    dead = [d for d in dead if d.sequence > middle]
                    continue
            culprit, projection, error = found
            # Every event before the culprit passed every projection: commit them as they are.
            before = [e for e in events if e.sequence < culprit]
            self._settle(batch, before, [d for d in dead if d.sequence < culprit], culprit - 1)
            if batch.halt:
                raise Poisoned(f"sequence {culprit}: cannot apply: {error}"[:2000])
            event = next(e for e in events if e.sequence == culprit)
            letter = self._letter(batch, culprit, event.event, projection, error)
            events = [e for e in events if e.sequence > culprit]
            dead = [d for d in dead if d.sequence > culprit]
            if projection == EVERY:
                dead = [letter, *dead]
            else:  # only that projection misses it: every other one applies it now
                self._alone(batch, event, [letter])

    def _alone(self, batch: _Batch, event: Stored, letters: list[DeadLetter]) -> None:
        """Commit `event` alone, applied by every projection but those of `letters` (the
        ones that raised on it); a further projection raising joins them (each once)."""
        while True:
            skip = {letter.projection for letter in letters}
            if EVERY in skip:
                letters = [letter for letter in letters if letter.projection == EVERY]
            try:
                projections = [p for p in batch.projections if p.name not in skip]
                self._commit(
                    projections, [event] if EVERY not in skip else [], event.sequence, letters
                )
                self.checkpoint = event.sequence
                batch.dead.extend(letters)
                return
            except _MACHINE:
                raise
            except Exception as exc:
                if EVERY in skip:
                    raise
                found = _blame(exc, [event])
                assert found is not None  # one event is always blamed
                projection = EVERY if found[1] in skip else found[1]
                letters.append(
                    self._letter(batch, event.sequence, event.event, projection, found[2])
                )

    @staticmethod
    def _letter(
        batch: _Batch, sequence: int, event: Any, projection: str, error: str
    ) -> DeadLetter:
        subject = batch.subjects.get(sequence) or _SUBJECTS.events(
            event.aggregate_type, event.aggregate_id
        )
        text = f"cannot apply: {error}"[:2000]
        return DeadLetter(sequence, subject, text, codec.encode(event), projection)

    def _commit(
        self,
        projections: Sequence[Projection],
        events: Sequence[Stored],
        last_sequence: int,
        dead: Sequence[DeadLetter],
    ) -> None:
        with self._write:
            self.con.execute("BEGIN")
            try:
                names = apply_projections(
                    self.con,
                    self.checker,
                    self.versions,
                    projections,
                    events,
                    self._command,
                    _MACHINE,
                )
                _record(self.con, dead)
                command = events[-1].event.metadata.command_id if events else self._command
                self.con.execute(
                    "UPDATE checkpoint SET sequence = ?, command_id = ? WHERE id = 1",
                    [last_sequence, command],
                )
                self.con.execute("COMMIT")
                self._command = command
                self.versions.committed()  # only now do its states reach memory
                tables = {t for p in projections if p.name in names for t in p.tables}
                self.changed |= {t.lower() for t in tables} | {"checkpoint"}
                self.changed |= {"dead_letters"} if dead else set()
            except BaseException as exc:
                self.versions.rolled_back()
                with contextlib.suppress(duckdb.TransactionException):  # a failed COMMIT ended it
                    self.con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error) and storage_exhausted(exc):
                    raise StorageFull(
                        f"the read model {self.path} cannot be written: {exc}; events wait in "
                        "the stream until space returns",
                        retry_after=5,
                    ) from exc
                raise

    def query(self, projection: str, name: str, params: Any) -> Any:
        """The answer of query `name` of `projection` with its typed `params` (a Struct)."""
        query = self.projections[projection].queries[name]
        cursor = self.con.cursor()
        try:
            if query.run is not None:  # a hook never writes (a query's SQL is checked at start)
                cursor.execute("BEGIN TRANSACTION READ ONLY")
            return answer(cursor, query, params)
        finally:
            cursor.close()  # rolls the read-only transaction back

    def query_as_of(self, projection: str, name: str, params: Any) -> tuple[int, Any]:
        """`query`, and the checkpoint its answer is as of: both read in one transaction, so
        a batch committed meanwhile is in neither."""
        cursor = self.con.cursor()
        try:
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            sequence = checkpoint_of(cursor)
            return sequence, answer(cursor, self.projections[projection].queries[name], params)
        finally:
            cursor.close()  # rolls the transaction back

    def snapshot(self, target: Path, storage_version: str = "v1.5.0") -> int:
        """A consistent copy of the read models at `target`, written through this
        connection (see `projector/snapshot.py`); returns the sequence it holds."""
        return snapshot.write(self.con, target, storage_version)

    def copy_tables(self, source: ReadModel, names: Collection[str]) -> None:
        """Replace the tables of projections `names` with `source`'s (same versions), and
        take over their dead letters."""
        with self._write:
            self.con.execute("BEGIN")
            letters = (
                source.con.cursor()
                .execute(
                    "SELECT sequence, subject, error, data, projection FROM dead_letters "
                    "WHERE list_contains(?, projection)",
                    [list(names)],
                )
                .fetchall()
            )
            _record(self.con, letters)
            for name in names:
                for table in self.projections[name].tables:
                    data = source.con.cursor().sql(f"SELECT * FROM {table}").to_arrow_table()
                    self.con.execute(f"DELETE FROM {table}")
                    self.con.register("_copy", data)
                    self.con.execute(f"INSERT INTO {table} SELECT * FROM _copy")
                    self.con.unregister("_copy")
                self._set_version(self.projections[name])
            self.con.execute("COMMIT")

    def close(self) -> None:
        """Close the DuckDB connection (its cursors with it); the file stays."""
        self.con.close()


def _record(con: duckdb.DuckDBPyConnection, letters: Sequence[Sequence[Any]]) -> None:
    """Insert dead letters `(sequence, subject, error, data, projection)`."""
    if letters:
        con.executemany(
            "INSERT OR IGNORE INTO dead_letters (sequence, subject, error, data, projection) "
            "VALUES (?, ?, ?, ?, ?)",
            [list(letter) for letter in letters],
        )


def _blame(exc: Exception, events: Sequence[Stored]) -> tuple[int, str, str] | None:
    """(sequence, projection or EVERY, error) of the event `exc` is due to, if known."""
    if isinstance(exc, Unapplicable) and any(e.sequence == exc.sequence for e in events):
        return exc.sequence, exc.projection or EVERY, exc.error
    if len(events) != 1:
        return None
    if isinstance(exc, Failed):
        return events[0].sequence, exc.projection, str(exc)
    if isinstance(exc, Unapplicable) and exc.projection:  # a hook naming another sequence
        return events[0].sequence, exc.projection, f"{exc.projection}: {exc.error}"
    return events[0].sequence, EVERY, f"{type(exc).__name__}: {exc}"
