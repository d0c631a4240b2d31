"""Free space of the filesystems that hold Ironstar's data, and when to call one full.

Used where a process can see the disk: `ironstar up` watches its data dir (the event store,
the read models, the logs), and a gateway told the event store's directories
(`IRONSTAR_GATEWAY_STORAGE_PATHS`) refuses commands at once while one of them is full,
instead of letting each wait for an append that cannot be stored.
"""

from __future__ import annotations

import os
from pathlib import Path

LOW_BYTES = 4 * 1024 * 1024  # below this a filesystem counts as full
RESUME_BYTES = 16 * 1024 * 1024  # ... and as usable again above this (hysteresis)


def free_bytes(path: Path | str) -> int:
    """Bytes an unprivileged process may still write on the filesystem of `path`."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def size(n: int) -> str:
    """`512 B`, `3.2 MiB`, `1.5 GiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def shortage(paths: list[str], was_full: bool = False) -> str | None:
    """Why storage under `paths` is full, or None. A filesystem full before stays full until
    it has RESUME_BYTES free again, so a stack does not flap at the edge."""
    for path in paths:
        try:
            free = free_bytes(path)
        except OSError:
            continue  # not there (yet): nothing to say about its space
        if free < (RESUME_BYTES if was_full else LOW_BYTES):
            return f"the filesystem of {path} has {size(free)} free"
    return None
