"""The DuckDB read model: one file per replica, rows and checkpoint in one transaction.

The database is opened locked down: no file or network access, no extension loading, and
its configuration frozen, so the ad-hoc SQL that queries run over it cannot reach outside
it. The projector needs none of that: batches arrive as registered Arrow tables.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from common.envelope import Envelope
from projector.projection import Projection
from projector.projections import analytics, todo_lists, user_profiles

PROJECTIONS: tuple[Projection, ...] = (todo_lists, user_profiles, analytics)  # type: ignore[assignment]

LOCKED_DOWN = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "allow_community_extensions": "false",
    "lock_configuration": "true",
}

_META_DDL = (
    "CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY, sequence BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_versions (name VARCHAR PRIMARY KEY, version INTEGER)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        sequence BIGINT PRIMARY KEY, subject VARCHAR, error VARCHAR, data BLOB,
        recorded_at TIMESTAMPTZ DEFAULT current_timestamp)""",
)


class ReadModel:
    """Owns the DuckDB connection; `apply` is called from one thread at a time."""

    def __init__(self, path: Path, projections: Sequence[Projection] = PROJECTIONS) -> None:
        self.path = path
        self.projections = {p.name: p for p in projections}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), config=dict(LOCKED_DOWN))
        self._write = threading.Lock()
        with self._write:
            self.con.execute("BEGIN")
            for statement in _META_DDL:
                self.con.execute(statement)
            for projection in projections:
                for statement in projection.ddl:
                    self.con.execute(statement)
                self.con.execute(
                    "INSERT OR REPLACE INTO projection_versions VALUES (?, ?)",
                    [projection.name, projection.version],
                )
            self.con.execute("INSERT OR IGNORE INTO checkpoint VALUES (1, 0)")
            self.con.execute("COMMIT")
        self.checkpoint = self._read_checkpoint()

    def _read_checkpoint(self) -> int:
        row = self.con.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def apply(
        self,
        events: Sequence[tuple[int, Envelope]],
        last_sequence: int,
        dead: Sequence[tuple[int, str, str, bytes]] = (),
    ) -> int:
        """Apply a batch and move the checkpoint to `last_sequence`, all in one transaction.

        Events at or below the checkpoint were applied before and are skipped. Returns the
        new checkpoint. The caller acks the stream only after this returns.
        """
        fresh = [(seq, e) for seq, e in events if seq > self.checkpoint]
        if last_sequence <= self.checkpoint:
            return self.checkpoint
        with self._write:
            self.con.execute("BEGIN")
            try:
                for projection in self.projections.values():
                    projection.apply(self.con, fresh)
                if dead:
                    self.con.executemany(
                        "INSERT OR IGNORE INTO dead_letters (sequence, subject, error, data) "
                        "VALUES (?, ?, ?, ?)",
                        [list(d) for d in dead if d[0] > self.checkpoint],
                    )
                self.con.execute("UPDATE checkpoint SET sequence = ? WHERE id = 1", [last_sequence])
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        self.checkpoint = last_sequence
        return last_sequence

    def query(self, projection: str, name: str, params: dict[str, Any]) -> Any:
        cursor = self.con.cursor()
        try:
            return self.projections[projection].queries[name](cursor, params)
        finally:
            cursor.close()

    def close(self) -> None:
        self.con.close()
