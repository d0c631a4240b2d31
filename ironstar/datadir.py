"""One stack per data dir: `<data dir>/ironstar.lock`, locked for as long as the stack runs.

`ironstar up` and `ironstar cluster up` take an exclusive `flock` on the file before they
touch anything else in the directory and write who holds it (pid, command, gateway URL).
A second stack on the same directory is refused with that line, and never rewrites the
first one's files (`up.json`, the NATS config, the JetStream store, the DuckDB files).

`flock` (not `fcntl` record locks): the lock belongs to the open file description, so
closing another descriptor of the file elsewhere in the process does not drop it. The
kernel drops it when the holder dies, so a crashed stack never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironstar.ports import next_free, port_is_free
from ironstar.processes import StartError
from ironstar.rerun import again, typed

LOCK_FILE = "ironstar.lock"


@dataclass
class DataDirLock:
    """The exclusive lock on a data dir (a `flock` on its lock file) that one stack holds while it
    runs; `fd` is the locked descriptor, inherited by the stack's processes."""

    data_dir: Path
    fd: int | None = None

    @property
    def path(self) -> Path:
        """The lock file, which also names the holder (its command and URL)."""
        return self.data_dir / LOCK_FILE

    def acquire(self, command: str, http_url: str) -> None:
        """Lock the data dir for this process, or raise StartError naming the holder."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartError(f"cannot use data dir {self.data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartError(in_use(self.data_dir, http_url)) from None
        self.fd = fd
        note = {"pid": os.getpid(), "command": command, "http_url": http_url}
        try:  # who holds it, for the line that refuses a second stack
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(note).encode())
        except OSError as exc:
            self.release()
            raise StartError(f"cannot write to data dir {self.data_dir}: {exc.strerror}") from None

    def release(self) -> None:
        """Drop the lock (closing its descriptor); nothing when not held."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def holder(data_dir: Path) -> dict[str, Any] | None:
    """Who holds the data dir's lock, as it wrote itself down (`{"pid", "command",
    "http_url"}`); None when nobody does."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                found: dict[str, Any] = json.loads(path.read_text() or "{}")
            except ValueError:
                found = {}
            return found
        return None
    finally:
        os.close(fd)


def in_use(data_dir: Path, asked: str | None = None) -> str:
    """The one line that refuses a second stack on `data_dir` (`asked`: its URL)."""
    found = holder(data_dir) or {}
    pid, command, url = found.get("pid"), found.get("command", "ironstar"), found.get("http_url")
    where = f"{data_dir.resolve()}"
    if "--detach" in command:
        return (
            f"data dir {where} is in use by a detached `ironstar cluster up` ({url}); "
            f"`{typed(['cluster', 'down', '--data-dir', str(data_dir)])}` stops it"
        )
    if isinstance(pid, int) and not _alive(pid):
        return (
            f"data dir {where} is still held by processes that `{command}` (pid {pid}, gone) "
            f"started; stop them first (`fuser -v {where}/{LOCK_FILE}` lists them)"
        )
    return (
        f"data dir {where} is in use by `{command}` (pid {pid}"
        + (f", {url}" if url else "")
        + "); one stack per data dir: stop that one, or start another beside it with its own "
        f"data dir and port: `{beside(data_dir, asked)}`"
    )


def beside(data_dir: Path, asked: str | None) -> str:
    """The user's command again with a data dir nobody holds and a free port (the one they
    asked for, `asked` an http URL, when it is free)."""
    other = next(
        candidate
        for n in range(2, 100)
        if holder(candidate := data_dir.with_name(f"{data_dir.name}-{n}")) is None
    )
    host, _, port = (asked or "http://127.0.0.1:8000").removeprefix("http://").rpartition(":")
    chosen = int(port) if port_is_free(host, int(port)) else next_free(host, int(port))
    return again({"--data-dir": str(other), "--http-port": str(chosen)})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
