"""Service processes as `ironstar up` and `ironstar cluster up` run them.

Each service is `python -m ironstar <service> --ready-file F` with its settings passed as
`IRONSTAR_*` variables; it writes F once it serves, so the supervisor never polls ports.
Stopping is SIGTERM to all, then SIGKILL to whatever outlives the grace_s period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from common.runtime import LIFELINE

STOP_GRACE_S = 4.0
_LIFELINE: list[int] = []  # this supervisor's lifeline: its read end (`lifeline`)


class StartError(Exception):
    """A one-line reason why the system could not start."""


@dataclass
class Launch:
    """A service process that was started and has not yet said it is ready."""

    name: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    log: Path
    offset: int = 0  # the log's size at the start: what this run wrote comes after it


def spawn(
    service: str,
    env: Mapping[str, str],
    log: Path,
    ready_file: Path,
    name: str | None = None,
    keep_fds: tuple[int, ...] = (),
    tied: bool = True,
) -> Launch:
    """Start `python -m ironstar <service>` in a session of its own.

    Its own session: the terminal's Ctrl-C (SIGINT to the foreground process group) reaches
    only the supervisor, which stops the services in order. `keep_fds` are inherited.
    `tied`: the service stops when this process exits, however (`lifeline`); not for a
    detached cluster, whose services outlive the command on purpose.
    """
    if tied:
        env = {**env, LIFELINE: str(lifeline())}
        keep_fds = (*keep_fds, lifeline())
    ready_file.unlink(missing_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ironstar", service, "--ready-file", str(ready_file)],
            env=dict(env),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=keep_fds,
        )
    return Launch(name or service, process, ready_file, log, offset)


def lifeline() -> int:
    """The read end of this process's lifeline, made once: a pipe whose write end only this
    process holds and never writes, so a service given the read end (`spawn`) reads
    end-of-file exactly when this process is gone, however it ended
    (`common.runtime`)."""
    if not _LIFELINE:
        read, _ = os.pipe()  # the write end stays open, unreferenced, until this process ends
        _LIFELINE.append(read)
    return _LIFELINE[0]


def wait_ready(
    launches: list[Launch], timeout_s: float, on_ready: Callable[[str, str], None] | None = None
) -> None:
    """Wait until each launch wrote its ready file; raise StartError naming the first failure."""
    deadline = time.monotonic() + timeout_s
    pending = list(launches)
    while pending:
        for launch in list(pending):
            if launch.ready_file.exists():
                pending.remove(launch)
                if on_ready is not None:
                    on_ready(launch.name, launch.ready_file.read_text())
            elif launch.process.poll() is not None:
                raise StartError(
                    f"{launch.name} exited with {launch.process.returncode}: "
                    f"{last_line(launch.log, launch.offset)}"
                )
        if pending and time.monotonic() > deadline:
            names = ", ".join(launch.name for launch in pending)
            logs = pending[0].log.parent
            raise StartError(f"{names} not ready within {timeout_s:g} s; see {logs}")
        if pending:
            time.sleep(0.05)


def stop_all(processes: list[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live process in the given order, then SIGKILL what outlives `grace_s`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def last_line(path: Path, offset: int = 0) -> str:
    """The last line written to the log after `offset` (not an old run's)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if _says(line)] or lines
    return lines[-1][-400:] if lines else "(no output)"


def _says(line: str) -> bool:
    """Not blank, nor a traceback's frame, source, caret line or heading: its error is."""
    return not (line[0].isspace() or line.startswith("Traceback (") or not line.strip("^~ "))


def check_writable(directory: Path) -> None:
    """Create `directory` if needed and write a file in it; StartError naming why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartError(f"cannot write to data dir {directory}: {exc.strerror}") from None


def foreground(
    start: Callable[[], str], check: Callable[[], str | None], stop: Callable[[], bool]
) -> int:
    """Start, print the banner `start` returns, run until Ctrl-C, SIGTERM or SIGHUP, then stop.

    `stop` returns whether there was anything to stop (a start refused at once has none).
    `check` runs every 0.2 s and supervises: it may restart what died, and returns a reason
    to stop everything (printed) when it cannot.
    """
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: its terminal closed
        signal.signal(sig, on_signal)
    try:
        print(start())
        sys.stdout.flush()
        while not stopping:
            reason = check()
            if reason:
                print(f"ironstar: {reason}; stopping everything", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    except StartError as exc:
        print(f"ironstar: {exc}", file=sys.stderr)
        return 1
    finally:
        if stop():
            print("ironstar: stopped")


def exit_reason(name: str, process: subprocess.Popen[bytes], log: Path) -> str:
    """`writer exited with 1: <last log line>`, or `... was killed by SIGKILL`."""
    code = process.returncode
    how = (
        f"was killed by {signal.Signals(-code).name}"
        if code is not None and code < 0
        else f"exited with {code}"
    )
    return f"{name} {how} (last log line: {last_line(log)})"
