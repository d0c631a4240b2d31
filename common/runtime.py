"""How every service process runs: logging, signals, readiness, a clean stop.

A service is an async function `main(ready, stop)`: it calls `ready()` once it serves
and returns after `stop` is set. SIGINT and SIGTERM set `stop`. When `ready_file` is given
(by `ironstar up`), `ready()` writes it, so the supervisor knows without polling ports.
Started by a supervisor in the foreground (`ironstar up`, `ironstar cluster up`), it is
given the read end of the supervisor's lifeline (`LIFELINE`, an inherited pipe whose write
end only the supervisor holds): its end-of-file, when the supervisor died however it died
(kill -9, the OOM killer), sets `stop` too, so no service outlives its supervisor.

`ready()` also freezes what start-up made (`gc.freeze`, after one collection): full
collections then skip the modules, catalogue and app, which live as long as the process.
Measured in `ironstar bench live` (issue 17, docs/benchmarks.md): the projector's one full
collection per run, 53-247 ms, fell inside the measured window in 3 of 9 runs, stalling
the apply and the live round in flight; with the freeze, none in 2 runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from common.errors import IronstarError
from common.telemetry import configure_logging

Main = Callable[[Callable[[str], None], asyncio.Event], Awaitable[None]]
LIFELINE = "IRONSTAR_LIFELINE_FD"  # the inherited fd of the supervisor's lifeline (a pipe)


def run(service: str, main: Main, ready_file: Path | None = None) -> int:
    """Run the service `main(ready, stop)` with logging configured for `service`, SIGINT/SIGTERM
    setting `stop`, and `ready(detail)` logged and written to `ready_file`. Exit status: 0 after
    a clean stop, 1 after an IronstarError or OSError (its message on stderr)."""
    configure_logging(service)
    log = structlog.get_logger()

    def ready(detail: str) -> None:
        gc.collect()  # what start-up left as garbage is not frozen with the rest
        gc.freeze()
        log.info("ready", detail=detail)
        if ready_file is not None:
            ready_file.write_text(detail)

    async def supervise() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _watch_lifeline(loop, stop, log)
        await main(ready, stop)

    try:
        asyncio.run(supervise())
    except IronstarError as exc:
        print(f"{service}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.exception("failed")
        print(f"{service}: {exc.strerror or exc!r}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


def _watch_lifeline(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, log: Any) -> None:
    """Set `stop` once the supervisor's lifeline (`LIFELINE`) reads end-of-file; nothing
    without one (a service started by hand) or when the descriptor is not one to watch."""
    fd = os.environ.get(LIFELINE, "")
    if not fd.isdigit():
        return

    def orphaned() -> None:
        loop.remove_reader(int(fd))  # end-of-file stays readable: once is enough
        log.warning("supervisor_gone", detail="the supervisor's lifeline closed; stopping")
        stop.set()

    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(int(fd), orphaned)
