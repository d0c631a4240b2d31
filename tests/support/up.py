"""`ironstar up` (or `make run`) as a person runs it in a terminal, for end-to-end tests.

The command runs in a session of its own, like a terminal's foreground job: `interrupt()`
sends SIGINT to that whole process group, as Ctrl-C does, so a test sees what a person sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.processes import children
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]


class Up:
    """One `ironstar up --data-dir D --http-port P ...` process and what it prints."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log: Path,
        *args: str,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.argv = argv or [
            sys.executable, "-m", "ironstar", "up",
            "--data-dir", str(data_dir), "--http-port", str(port), *args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL (`http://127.0.0.1:<port>`)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Up:
        """Start the command in a session of its own (so `interrupt` reaches every process it
        starts), its output appended to `log`; `ready` waits."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        """Everything the command printed so far."""
        return self.log.read_text(errors="replace")

    def ready(self, timeout: float = 60.0) -> Up:
        """Wait until the banner is out and the gateway answers /readyz with 200."""
        process = self.process
        assert process is not None

        def serving() -> bool:
            assert process.poll() is None, f"ironstar up exited: {self.output()[-3000:]}"
            if "ironstar: running; Ctrl-C stops everything" not in self.output():
                return False
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        until(serving, timeout, lambda: self.output()[-3000:])
        return self

    def add_todo(self, list_id: str, todo_id: str) -> httpx.Response:
        """POST an `add_todo` (text `Buy <todo_id>`) to this stack's gateway."""
        return httpx.post(
            f"{self.url}/api/commands/todo_list/{list_id}",
            json={"type": "add_todo", "payload": {"todo_id": todo_id, "text": f"Buy {todo_id}"}},
            timeout=15,
        )

    def address(self) -> dict[str, object]:
        """The running stack's `up.json` (ironstar/local.py): its NATS URL, gateway URL and
        the operator's NATS credentials."""
        found: dict[str, object] = json.loads((self.data_dir / "up.json").read_text())
        return found

    def nats_pid(self) -> int | None:
        """The pid of the nats-server this command runs now (None between two of them)."""
        assert self.process is not None
        for pid in children(self.process.pid):
            try:
                if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the command's whole process group; its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        """Its exit status within `timeout` seconds; else kill everything and fail."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ironstar up did not stop within {timeout} s") from None

    def kill(self) -> None:
        """Teardown of last resort: SIGKILL the command and every process it started."""
        if self.process is None or self.process.poll() is not None:
            return
        for pid in children(self.process.pid):
            for sig_pid in [*children(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(sig_pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()
