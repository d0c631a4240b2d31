"""`ironstar up`: nats-server, writer, projector and gateway as separate processes.

Each service is started as `python -m ironstar <service> --ready-file F` with the settings
passed as `IRONSTAR_*` variables; it writes F once it serves. On Ctrl-C or SIGTERM the
services are stopped in reverse order (gateway first, NATS last) and any process still
alive after the grace period is killed, so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import NatsSettings
from ironstar.natsserver import NatsServer, free_port, port_is_free
from ironstar.natsusers import ServiceUser, authorization, service_users

SERVICES = ("writer", "projector", "gateway")
STOP_GRACE_S = 4.0


class StartError(Exception):
    """A one-line reason why the system could not start."""


@dataclass
class Stack:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    nats_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats_users: dict[str, ServiceUser] = field(default_factory=dict)

    def start(self, say: bool = True, timeout: float = 30.0) -> None:
        self._check_data_dir()
        if not port_is_free(self.http_host, self.http_port):
            raise StartError(
                f"HTTP port {self.http_host}:{self.http_port} is busy; choose one with --http-port"
            )
        port = self.nats_port or free_port()
        if not port_is_free("127.0.0.1", port):
            raise StartError(f"NATS port {port} is busy; pick another with --nats-port")
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        if say:
            print(f"ironstar: data in {self.data_dir.resolve()} (logs in {logs})")
        names = NatsSettings.from_env({**os.environ, **self.extra_env})
        self.nats_users = service_users(names.prefix, names.stream)
        server = NatsServer(self.data_dir, port, extra_config=authorization(self.nats_users))
        try:
            self.nats = server.start(log=logs / "nats-server.log")
        except RuntimeError as exc:
            raise StartError(str(exc)) from None
        if say:
            print(
                f"ironstar: nats-server  {self.nats.url}  (JetStream, fsync before ack, "
                "a user per service)"
            )
        env = {
            **os.environ,
            "IRONSTAR_NATS_URL": self.nats.url,
            "IRONSTAR_PROJECTOR_DATA_DIR": str(self.data_dir / "projector"),
            "IRONSTAR_GATEWAY_HOST": self.http_host,
            "IRONSTAR_GATEWAY_PORT": str(self.http_port),
            **self.extra_env,
        }
        with tempfile.TemporaryDirectory(prefix="ironstar-ready-") as ready_dir:
            for service in SERVICES:
                ready = Path(ready_dir) / service
                with open(logs / f"{service}.log", "ab") as log:  # the child keeps a copy
                    self.processes[service] = subprocess.Popen(
                        [sys.executable, "-m", "ironstar", service, "--ready-file", str(ready)],
                        env={**env, **self.nats_users[service].env()},
                        stdout=log,
                        stderr=log,
                        stdin=subprocess.DEVNULL,
                    )
            deadline = time.monotonic() + timeout
            pending = list(SERVICES)
            while pending:
                for service in list(pending):
                    ready = Path(ready_dir) / service
                    process = self.processes[service]
                    if ready.exists():
                        pending.remove(service)
                        if say:
                            print(f"ironstar: {service:<10} ready: {ready.read_text()}")
                    elif process.poll() is not None:
                        raise StartError(
                            f"{service} exited with {process.returncode}: "
                            f"{_last_line(logs / f'{service}.log')}"
                        )
                if time.monotonic() > deadline:
                    raise StartError(
                        f"{', '.join(pending)} not ready within {timeout:g} s; see {logs}"
                    )
                time.sleep(0.05)

    def _check_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise StartError(f"cannot write to data dir {self.data_dir}: {exc.strerror}") from None

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes.values())

    def stop(self) -> None:
        for service in reversed(SERVICES):
            process = self.processes.get(service)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.nats is not None:
            self.nats.stop(timeout=2.0)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][-400:] if lines else "(no output)"


def up(stack: Stack) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM."""
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
        print(
            f"ironstar: dashboard    http://{stack.http_host}:{stack.http_port}/"
            "   (Ctrl-C stops everything)"
        )
        sys.stdout.flush()
        while not stopping:
            if not stack.alive():
                dead = [s for s, p in stack.processes.items() if p.poll() is not None]
                print(f"ironstar: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    except StartError as exc:
        print(f"ironstar: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("ironstar: stopped")
