"""A detached cluster's record: which pids are its members, and stopping exactly those.

`ironstar cluster up --detach` writes `<data dir>/cluster.json` with each member's kind,
URL, pid and command line; `ironstar cluster down` signals only pids whose command line is
still the recorded one, so a pid the system reused for something else is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from ironstar.processes import STOP_GRACE_S, StartError

STATE_FILE = "cluster.json"
KINDS = ("nats", "writer", "projector", "gateway")  # start order; stop order is reversed


def record(data_dir: Path, members: dict[str, tuple[str, str, int | None]]) -> None:
    """Write the record: member name → (kind, url, pid)."""
    state = {
        name: {"kind": kind, "url": url, "pid": pid, "cmdline": cmdline(pid)}
        for name, (kind, url, pid) in members.items()
    }
    (data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def down(data_dir: Path, grace_s: float = STOP_GRACE_S) -> list[str]:
    """Stop the recorded members kind by kind (gateways first, NATS last); return their names.

    SIGTERM, then SIGKILL to whatever outlives `grace_s` seconds. A recorded pid whose
    command line changed is another process now, and left alone. StartError when no
    cluster is recorded in `data_dir`.
    """
    path = data_dir / STATE_FILE
    if not path.exists():
        raise StartError(f"no detached cluster recorded in {path}")
    state: dict[str, dict[str, Any]] = json.loads(path.read_text())
    stopped: list[str] = []
    for kind in reversed(KINDS):
        mine = {
            name: (int(entry["pid"]), str(entry["cmdline"]))
            for name, entry in state.items()
            if entry["kind"] == kind and entry["pid"] and cmdline(entry["pid"]) == entry["cmdline"]
        }
        for pid, _ in mine.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for pid, line in mine.values():
            while cmdline(pid) == line and not _zombie(pid):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
        stopped.extend(mine)
    path.unlink()
    return stopped


def cmdline(pid: int | None) -> str:
    """The command line of process `pid` as /proc holds it (NUL separated), or "" when it is gone: a
    recorded pid is only ours while this still matches."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True
