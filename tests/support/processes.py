"""Run Ironstar services as real processes, as `ironstar up` would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.waiting import until


class Service:
    """`python -m ironstar <name>` with the given settings, ready when it says so."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = {**os.environ, **env}
        self.workdir = workdir
        self.ready_file = workdir / f"{name}-{id(self)}.ready"
        self.log = workdir / f"{name}-{id(self)}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Service:
        """`launch`, then wait up to `timeout` seconds until ready."""
        return self.launch().ready(timeout)

    def launch(self) -> Service:
        """Start the process without waiting (`ready` waits): services launched one after
        another start side by side."""
        self.ready_file.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ironstar", self.name, "--ready-file", str(self.ready_file)],
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        return self

    def ready(self, timeout: float = 30.0) -> Service:
        """Wait until the launched process says it is ready; fail if it exits first."""
        process = self.process
        assert process is not None, f"{self.name} was not launched"

        def up() -> bool:
            assert process.poll() is None, f"{self.name} exited: {self.log.read_text()[-2000:]}"
            return self.ready_file.exists()

        until(up, timeout, lambda: f"{self.name} not ready: {self.log.read_text()[-2000:]}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait up to `timeout` seconds; the exit status. AssertionError
        (after a SIGKILL) when it does not exit in time."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout} s") from None

    def kill(self) -> None:
        """SIGKILL the service and reap it."""
        self.stop(signal.SIGKILL)


def children(pid: int) -> set[int]:
    """The pids of a process's direct children (zombies included until reaped)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `ironstar ARGS` to completion with extra environment; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "ironstar", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
