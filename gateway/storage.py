"""The gateway's view of the event store's disk (`IRONSTAR_GATEWAY_STORAGE_PATHS`).

When one of the paths' filesystems is full, commands get 503 `storage_full` with
`Retry-After` at once (an append could not be stored: JetStream would leave it
unacknowledged), `/readyz` says so, and the `event_store_storage_exhausted` gauge is 1.
Reads, feeds and the dashboard go on. Nothing to watch when the setting is empty (the event store is
elsewhere; its own 10047 answers still reach clients as `storage_full`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Gauge

from common import storage
from common.errors import StorageFull

EXHAUSTED = Gauge("event_store_storage_exhausted", "1 while the event store's filesystem is full")
RETRY_AFTER_S = 5


@dataclass
class StorageWatch:
    """Whether the event store's disk under `paths` is full; `full` remembers the last answer, so a
    full disk stays full until it has room to spare again (no flapping)."""

    paths: list[str] = field(default_factory=list)
    full: bool = False

    @classmethod
    def of(cls, setting: str) -> StorageWatch:
        """The watch of a comma-separated `IRONSTAR_GATEWAY_STORAGE_PATHS` value (empty: nothing
        watched)."""
        return cls([p.strip() for p in setting.split(",") if p.strip()])

    def shortage(self) -> str | None:
        """Why the disk is full (e.g. `the filesystem of /data has 12 MiB free`), or None; sets the
        `event_store_storage_exhausted` gauge."""
        why = storage.shortage(self.paths, self.full)
        self.full = why is not None
        EXHAUSTED.set(1 if self.full else 0)
        return why

    def check_writable(self) -> None:
        """Raise StorageFull when the event store cannot take an append now."""
        why = self.shortage()
        if why is not None:
            raise StorageFull(
                f"the event store is out of disk space ({why}); nothing was appended: retry "
                "once space is freed (reads and live feeds still work)",
                retry_after=RETRY_AFTER_S,
            )
