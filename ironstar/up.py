"""`ironstar up`: nats-server, writer, projector and gateway as separate processes.

Each service is started as `python -m ironstar <service> --ready-file F` with the settings
passed as `IRONSTAR_*` variables (see ironstar/processes.py). On Ctrl-C or SIGTERM the
services are stopped in reverse order (gateway first, NATS last) and any process still
alive after the grace period is killed, so nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import NatsSettings
from ironstar import local
from ironstar.natsserver import NatsServer, free_port, port_is_free
from ironstar.natsusers import ServiceUser, authorization, service_users
from ironstar.processes import StartError, check_writable, foreground, spawn, stop_all, wait_ready

SERVICES = ("writer", "projector", "gateway")

__all__ = ["SERVICES", "Stack", "StartError", "up"]


@dataclass
class Stack:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    nats_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    nats: NatsServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats_users: dict[str, ServiceUser] = field(default_factory=dict)

    def start(self, say: bool = True, timeout: float = 30.0) -> None:
        check_writable(self.data_dir)
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
            print(
                f"ironstar: starting nats-server, {', '.join(self.services)}"
                f"  (data in {self.data_dir.resolve()}, logs in {logs.resolve()})"
            )
        names = NatsSettings.from_env({**os.environ, **self.extra_env})
        self.nats_users = service_users(names.prefix, names.stream)
        server = NatsServer(self.data_dir, port, extra_config=authorization(self.nats_users))
        try:
            self.nats = server.start(log=logs / "nats-server.log")
        except RuntimeError as exc:
            raise StartError(str(exc)) from None
        if say:
            print(
                f"ironstar: nats-server ready  {self.nats.url} (JetStream, fsync before ack, "
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
            launches = [
                spawn(
                    service,
                    {**env, **self.nats_users[service].env()},
                    logs / f"{service}.log",
                    Path(ready_dir) / service,
                )
                for service in self.services
            ]
            self.processes = {launch.name: launch.process for launch in launches}
            wait_ready(launches, timeout, _say_ready if say else None)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def alive(self) -> bool:
        return not self.exited()

    def stop(self) -> None:
        stop_all([self.processes[s] for s in reversed(self.services) if s in self.processes])
        if self.nats is not None:
            self.nats.stop(timeout=2.0)


def _say_ready(service: str, detail: str) -> None:
    print(f"ironstar: {service:<11} ready  {detail}")


def banner(stack: Stack) -> str:
    """Where everything is, once it all runs."""
    assert stack.nats is not None
    http = f"http://{stack.http_host}:{stack.http_port}"
    data = stack.data_dir.resolve()
    return "\n".join(
        (
            "",
            f"  dashboard  {http}/",
            f"  HTTP API   {http}/schema (OpenAPI)   metrics {http}/metrics",
            f"  NATS       {stack.nats.url}   (export IRONSTAR_NATS_URL={stack.nats.url})",
            f"  data       {data}",
            f"  try        ironstar demo --url {http}    ironstar status --data-dir {data}",
            "",
            "ironstar: running; Ctrl-C stops everything",
        )
    )


def up(stack: Stack, on_ready: Callable[[str], object] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM.

    While it runs, `<data dir>/up.json` says where it listens, so `ironstar status` finds
    it. `on_ready(http_url)` runs in a daemon thread once everything serves (`up --demo`).
    """
    address = stack.data_dir / "up.json"
    http = f"http://{stack.http_host}:{stack.http_port}"

    def start() -> str:
        stack.start()
        assert stack.nats is not None
        operator = stack.nats_users["operator"]
        local.write(stack.data_dir, stack.nats.url, http, operator.name, operator.password)
        if on_ready is not None:
            threading.Thread(target=on_ready, args=(http,), daemon=True).start()
        return banner(stack)

    def stop() -> None:
        stack.stop()
        address.unlink(missing_ok=True)

    return foreground(start, stack.exited, stop)
