"""How every service process runs: logging, signals, readiness, a clean stop.

A service is an async function `main(ready, stop)`: it calls `ready()` once it serves
and returns after `stop` is set. SIGINT and SIGTERM set `stop`. When `ready_file` is given
(by `ironstar up`), `ready()` writes it, so the supervisor knows without polling ports.

`ready()` also freezes what start-up made (`gc.freeze`, after one collection): full
collections then skip the modules, catalogue and app, which live as long as the process.
Measured in `ironstar bench live` (issue 17, docs/benchmarks.md): the projector's one full
collection per run, 53-247 ms, fell inside the measured window in 3 of 9 runs, stalling
the apply and the live round in flight; with the freeze, none in 2 runs.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from common.errors import IronstarError
from common.telemetry import configure_logging

Main = Callable[[Callable[[str], None], asyncio.Event], Awaitable[None]]


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
