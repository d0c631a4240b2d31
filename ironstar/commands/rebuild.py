"""`ironstar rebuild [--projection P]`: rebuild read models from sequence 1, with progress.

Asks the running projector replica named by `--replica` (default
`IRONSTAR_PROJECTOR_NAME`) over NATS to build a new DuckDB file from the stream and swap
it in; queries are answered from the old file meanwhile. Prints a progress bar (events
done, rate, ETA) until the swap. A replica also rebuilds by itself at start when a
projection's code version differs from its file's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from common.errors import Unavailable
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import valid_id
from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, ask, target


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    one = commands.add_parser(
        "rebuild",
        help="rebuild read models into a new file and swap it in",
        description="Rebuild projections of a running projector replica from sequence 1 "
        "into a new DuckDB file, then swap it in.",
        **examples("ironstar rebuild --projection stream"),
    )
    one.add_argument(
        "--projection", action="append", default=[], help="only this projection (repeatable)"
    )
    one.add_argument("--replica", help="the replica to rebuild (default IRONSTAR_PROJECTOR_NAME)")
    add_data_dir(one)
    one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Ask the replica to rebuild and follow its progress bar until it is done. Exit status 0, or 1
    when the rebuild failed (why on stderr); Unavailable when the replica does not answer."""
    replica = valid_id(args.replica or ProjectorSettings.from_env().name, "replica")
    status = asyncio.run(_follow(target(args).nats, replica, args.projection))
    if status["state"] != "done":
        print(f"rebuild failed: {status['error']}", file=sys.stderr)
        return 1
    print(f"rebuilt {', '.join(status['projections'])} up to sequence {status['done']}")
    return 0


async def _follow(settings: NatsSettings, replica: str, projections: list[str]) -> dict[str, Any]:
    target, params = f"rebuild.{replica}", {"projections": projections}
    try:
        status: dict[str, Any] = (await ask(settings, target, "start", params))["result"]
    except Unavailable as exc:
        raise Unavailable(f"{exc.message} (replica {replica!r}; see --replica)") from None
    while status["state"] in ("running", "swapping"):
        _bar(status)
        await asyncio.sleep(0.25)  # a progress display, not synchronisation
        status = (await ask(settings, target, "status", {}))["result"]
    _bar(status)
    print(file=sys.stderr)
    return status


def _bar(status: dict[str, Any], width: int = 30) -> None:
    if not status["total"] and status["state"] == "running":  # the target is not known yet
        print(f"\r[{'.' * width}] starting".ljust(100), end="", file=sys.stderr, flush=True)
        return
    done, total = int(status["done"]), max(int(status["total"]), 1)
    share = min(done / total, 1.0) if status["state"] != "done" else 1.0
    filled = int(share * width)
    eta = status.get("eta_s")
    line = (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {share:6.1%}  {done:,}/{total:,} events  "
        f"{status['rate']:,.0f}/s  ETA {'-' if eta is None else f'{eta:.0f} s'}  {status['state']}"
    )
    print(line.ljust(100), end="", file=sys.stderr, flush=True)
