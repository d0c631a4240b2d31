"""The DuckDB read model: one file per replica, rows and checkpoint in one transaction.

`ReadModel` owns the replica's file and its one connection: it opens it
(`projector/readmodel_file.py`: locked down, Ironstar's own tables), applies batches
(`apply`: every projection inside one transaction with the checkpoint; a batch that fails
is narrowed to the event it fails on by `projector/readmodel_isolation.py`), answers the
catalogue's queries (`query`, `query_as_of`), copies itself (`snapshot`) and takes over a
rebuilt file's tables (`copy_tables`). Its former public names (`DeadLetter`, `Poisoned`,
`EVERY`, `LOCKED_DOWN`, `checkpoint_of`) are still importable from here.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import structlog

from common import catalogue as catalogues
from common.app import Projection
from common.builtin import ALWAYS
from common.envelope import Envelope, Stored
from common.errors import StorageFull, storage_exhausted
from projector import readmodel_file as files
from projector import snapshot, staging
from projector.projection import answer
from projector.projection import apply as apply_projections
from projector.readmodel_file import LOCKED_DOWN, checkpoint_of
from projector.readmodel_isolation import EVERY, MACHINE, Applying, DeadLetter, Poisoned, isolate
from projector.staging import Checker, Staged, staged
from projector.versions import Versions

log = structlog.get_logger()

__all__ = ["EVERY", "LOCKED_DOWN", "DeadLetter", "Poisoned", "ReadModel", "checkpoint_of"]


def _above(events: Sequence[tuple[int, Envelope]], checkpoint: int) -> list[Stored]:
    """The events after `checkpoint` (events in stream order) as `Stored` records; a
    batch of `Stored` records is taken as it is (no record made again per event)."""
    start = bisect.bisect_right(events, checkpoint, key=lambda e: e[0])
    tail = events[start:]
    if all(type(e) is Stored for e in tail):
        return list(tail)  # type: ignore[arg-type]
    return [Stored._make(e) for e in tail]


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
        self.catalogue = catalogue
        self.projections = {p.name: p for p in projections}
        self.checker = Checker(catalogue)
        self.versions = Versions(catalogue.aggregates)
        self.con = files.connect(path)
        self._write = threading.Lock()
        with self._write:
            self.con.execute("BEGIN")
            files.create_engine_tables(self.con)
            staging.prepare(self.con)
            self.checkpoint = checkpoint_of(self.con)
            if not self.stale():  # a stale file is only read until its rebuild swaps in
                for projection in projections:
                    for statement in projection.ddl:
                        self.con.execute(statement)
                    files.set_version(self.con, projection)
            self.con.execute("COMMIT")
        self._command = files.last_command(self.con)
        self._typed: Mapping[int, Any] = {}  # the domain events of the batch `apply` applies
        self.changed: frozenset[str] = frozenset()  # tables the last `apply` changed

    def stale(self) -> list[str]:
        """Projections whose tables in this file were built by another code version (or
        are missing from a file that has applied events already)."""
        stored = files.stored_versions(self.con)
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
        typed: Mapping[int, Any] | None = None,
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
        `typed` (by sequence) may hold the domain events decoding built already
        (`replica.decode`), so payloads are converted once.
        Returns the dead letters. The caller acks the stream only after this returns.
        `changed` then names the tables it changed (lower case; `checkpoint` included).
        """
        self.changed = frozenset()
        if last_sequence <= self.checkpoint:
            return []
        fresh = _above(events, self.checkpoint)
        dead = [d for d in dead if d.sequence > self.checkpoint]
        projections = self._applying(only)
        batch = Applying(projections, subjects or {}, halt, self._commit, lambda: self.checkpoint)
        self._typed = typed or {}
        try:
            return isolate(batch, fresh, dead, last_sequence)
        finally:
            self._typed = {}

    def apply_staged(
        self, batch: Staged, last_sequence: int, only: Collection[str] | None = None
    ) -> bool:
        """Apply a batch the feed process staged (`projector/prestage.py`), all of it
        after the checkpoint and ending at `last_sequence`, and move the checkpoint there,
        in one transaction; True once committed. False, nothing done, when it cannot be
        taken so: it overlaps the checkpoint, or applying it failed for a reason that can
        come from its data (`apply` its envelopes then: it isolates the event at fault).
        Errors of the machine are raised as by `apply`; `changed` as after `apply`."""
        self.changed = frozenset()
        if not batch.sequences or batch.sequences[0] <= self.checkpoint:
            return False
        if batch.sequences[-1] != last_sequence:
            return False
        try:
            self._commit(self._applying(only), batch, last_sequence, [])
        except MACHINE:
            raise
        except Exception as exc:  # the data's: the envelopes' path isolates it
            log.info("staged_batch_refused", first=batch.sequences[0], error=repr(exc)[:500])
            return False
        return True

    def _applying(self, only: Collection[str] | None) -> list[Projection]:
        """The projections a batch applies: `only` those (and the engine's), or all."""
        return [
            p
            for p in self.projections.values()
            if only is None or p.name in only or p.name in ALWAYS
        ]

    def _commit(
        self,
        projections: Sequence[Projection],
        events: Sequence[Stored] | Staged,
        last_sequence: int,
        dead: Sequence[DeadLetter],
    ) -> None:
        """One transaction: `projections` apply `events` (envelopes, or a batch staged
        already), the `dead` letters are recorded and the checkpoint moves to
        `last_sequence`; `checkpoint` and `changed` follow once it has committed. Raises
        `StorageFull` when the disk is, else what applying raised, the transaction rolled
        back (the isolation's `Applying.commit`)."""
        with self._write:
            self.con.execute("BEGIN")
            try:
                if isinstance(events, Staged):
                    batch, envelopes = events.preceded_by(self._command), None
                else:
                    batch = staged(self.checker, events, self._command, self._typed)
                    envelopes = events
                names = apply_projections(
                    self.con, self.versions, projections, batch, envelopes, self._command, MACHINE
                )
                files.record_dead_letters(self.con, dead)
                command = batch.last_command if batch.sequences else self._command
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
                self.checkpoint = last_sequence
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

    def checkpoint_wal(self) -> None:
        """Fold the WAL into the file now (DuckDB's `CHECKPOINT`), as the projector does
        after a catch-up: else the first live commit past the 256 MB threshold pays it
        (~0.75 s at 1M events; docs/architecture.md, "Issue 16, session 9"). Best effort:
        a checkpoint DuckDB cannot run now is left to the threshold."""
        with self._write, contextlib.suppress(duckdb.Error):
            self.con.execute("CHECKPOINT")

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
            files.record_dead_letters(self.con, letters)
            for name in names:
                for table in self.projections[name].tables:
                    data = source.con.cursor().sql(f"SELECT * FROM {table}").to_arrow_table()
                    self.con.execute(f"DELETE FROM {table}")
                    self.con.register("_copy", data)
                    self.con.execute(f"INSERT INTO {table} SELECT * FROM _copy")
                    self.con.unregister("_copy")
                files.set_version(self.con, self.projections[name])
            self.con.execute("COMMIT")

    def close(self) -> None:
        """Close the DuckDB connection (its cursors with it); the file stays."""
        self.con.close()
