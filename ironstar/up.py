"""`ironstar up`: nats-server, writer, projector and gateway as separate processes.

Each service is started as `python -m ironstar <service> --ready-file F` with the settings
passed as `IRONSTAR_*` variables (see ironstar/processes.py). On Ctrl-C or SIGTERM the
services are stopped in reverse order (gateway first, NATS last) and any process still
alive after the grace_s period is killed, so nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import storage
from common.settings import APP_VARIABLE, NatsSettings, app_name
from ironstar import local
from ironstar.datadir import DataDirLock
from ironstar.natsserver import NatsServer
from ironstar.natsusers import ServiceUser, authorization, service_users
from ironstar.ports import busy_http, free_port, port_is_free
from ironstar.processes import (
    STOP_GRACE_S,
    StartError,
    check_writable,
    exit_reason,
    foreground,
    spawn,
    stop_all,
    wait_ready,
)
from ironstar.rerun import cli_command

SERVICES = ("writer", "projector", "gateway")
NATS_RESTARTS = 3  # nats-server restarts allowed within NATS_RESTART_WINDOW_S
NATS_RESTART_WINDOW_S = 60.0

__all__ = ["SERVICES", "Stack", "StartError", "up"]


@dataclass
class Stack:
    """The local stack of `ironstar up`: a nats-server and each service as its own process, in
    `data_dir` (locked while it runs), the gateway on `http_host`:`http_port`, NATS on
    `nats_port` (0: a free one), each service with its own NATS user."""

    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    nats_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    nats: NatsServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats_users: dict[str, ServiceUser] = field(default_factory=dict)
    nats_restarts: list[float] = field(default_factory=list)
    storage_full: bool = False
    lock: DataDirLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = DataDirLock(self.data_dir)

    @property
    def http_url(self) -> str:
        """The gateway's base URL."""
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def logs(self) -> Path:
        """Where nats-server and each service write their log."""
        return self.data_dir / "logs"

    def start(self, say: bool = True, timeout_s: float = 30.0) -> None:
        """Take the data dir, check its space and the ports, start nats-server and every service,
        and wait up to `timeout_s` seconds until each is ready. StartError naming what failed (a
        busy port, a full disk, a service that exited)."""
        self.lock.acquire("ironstar up", self.http_url)  # before touching anything in it
        port = self._preflight()
        self.logs.mkdir(exist_ok=True)
        if say:
            print(
                f"ironstar: starting nats-server, {', '.join(self.services)}"
                f"  (data in {self.data_dir.resolve()}, logs in {self.logs.resolve()})"
            )
        # The services and nats-server inherit the lock: the data dir stays locked while any
        # of them lives, even if this supervisor is killed without stopping them.
        held = () if self.lock.fd is None else (self.lock.fd,)
        nats = self._start_nats(port, held)
        if say:
            print(
                f"ironstar: nats-server ready  {nats.url} (JetStream, fsync before ack, "
                "a user per service)"
            )
        self._start_services(nats.url, held, timeout_s, say)

    def _preflight(self) -> int:
        """The NATS port to use, once the data dir is writable with room to start and the
        ports are free; StartError saying which is not."""
        check_writable(self.data_dir)
        full = storage.shortage([str(self.data_dir)])
        if full is not None:
            raise StartError(f"{full}: too little to start on; free some space first")
        if not port_is_free(self.http_host, self.http_port):
            raise StartError(busy_http(self.http_host, self.http_port))
        port = self.nats_port or free_port()
        if not port_is_free("127.0.0.1", port):
            raise StartError(f"NATS port {port} is busy; pick another with --nats-port")
        return port

    def _start_nats(self, port: int, held: tuple[int, ...]) -> NatsServer:
        names = NatsSettings.from_env({**os.environ, **self.extra_env})
        self.nats_users = service_users(names.prefix, names.stream)
        server = NatsServer(
            self.data_dir, port, extra_config=authorization(self.nats_users), keep_fds=held
        )
        try:
            self.nats = server.start(log=self.logs / "nats-server.log")
        except RuntimeError as exc:
            raise StartError(str(exc)) from None
        return self.nats

    def _start_services(
        self, nats_url: str, held: tuple[int, ...], timeout_s: float, say: bool
    ) -> None:
        env = {
            **os.environ,
            "IRONSTAR_NATS_URL": nats_url,
            "IRONSTAR_PROJECTOR_DATA_DIR": str(self.data_dir / "projector"),
            "IRONSTAR_GATEWAY_HOST": self.http_host,
            "IRONSTAR_GATEWAY_PORT": str(self.http_port),
            "IRONSTAR_GATEWAY_STORAGE_PATHS": str((self.data_dir / "jetstream").resolve()),
            **self.extra_env,
        }
        with tempfile.TemporaryDirectory(prefix="ironstar-ready-") as ready_dir:
            launches = [
                spawn(
                    service,
                    {**env, **self.nats_users[service].env()},
                    self.logs / f"{service}.log",
                    Path(ready_dir) / service,
                    keep_fds=held,
                )
                for service in self.services
            ]
            self.processes = {launch.name: launch.process for launch in launches}
            wait_ready(launches, timeout_s, _say_ready if say else None)

    def exited(self) -> list[str]:
        """The names of the services whose process has exited."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def check(self) -> str | None:
        """Supervise: a dead service stops everything; a dead nats-server is restarted in place
        (same port, same store) up to NATS_RESTARTS times a minute. Returns why to stop."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return exit_reason(name, process, self.logs / f"{name}.log")
        self._watch_storage()
        nats = self.nats
        if nats is None or nats.process is None or nats.process.poll() is None:
            return None
        log = self.logs / "nats-server.log"
        why = exit_reason("nats-server", nats.process, log)
        now = time.monotonic()
        self.nats_restarts = [t for t in self.nats_restarts if now - t < NATS_RESTART_WINDOW_S]
        if len(self.nats_restarts) >= NATS_RESTARTS:
            return f"{why}; it died {NATS_RESTARTS + 1} times within {NATS_RESTART_WINDOW_S:g} s"
        self.nats_restarts.append(now)
        print(f"ironstar: {why}; restarting it on {nats.url}", file=sys.stderr, flush=True)
        try:
            nats.start(log=log)
        except RuntimeError as exc:
            return f"{why}; it did not start again: {exc}"
        print("ironstar: nats-server running again; the services reconnect", flush=True)
        return None

    def _watch_storage(self) -> None:
        """Say when the data dir's disk fills; once space returns, restart nats-server, whose
        file store stays broken after a failed write (it would never ack again)."""
        why = storage.shortage([str(self.data_dir)], self.storage_full)
        if why is not None and not self.storage_full:
            print(
                f"ironstar: storage exhausted: {why}; commands get 503 storage_full, reads go "
                "on; everything resumes by itself once space is freed",
                file=sys.stderr,
                flush=True,
            )
        elif why is None and self.storage_full and self.nats is not None:
            print("ironstar: space available again; restarting nats-server", flush=True)
            self.nats.stop(timeout_s=STOP_GRACE_S)
            try:
                self.nats.start(log=self.logs / "nats-server.log")
            except RuntimeError as exc:  # the next check reports it as a dead nats-server
                print(f"ironstar: nats-server did not start again: {exc}", file=sys.stderr)
        self.storage_full = why is not None

    def stop(self) -> bool:
        """Stop what runs, services first; False when nothing had started."""
        if self.lock.fd is None:  # refused before it started anything: nothing is ours
            return False
        stop_all([self.processes[s] for s in reversed(self.services) if s in self.processes])
        if self.nats is not None:
            self.nats.stop(timeout_s=2.0)
        local.forget(self.data_dir)  # only the stack that holds the data dir cleans it up
        self.lock.release()
        return True


def _say_ready(service: str, detail: str) -> None:
    print(f"ironstar: {service:<11} ready  {detail}")


def banner(stack: Stack) -> str:
    """Where everything is, once it all runs, and exactly what to type next."""
    assert stack.nats is not None
    http = stack.http_url
    data = stack.data_dir.resolve()
    cli = cli_command()
    where = "" if data == local.DEFAULT_DATA_DIR.resolve() else f" --data-dir {stack.data_dir}"
    activate = (
        f"  (or `source {Path(cli).parent}/activate` once, then `ironstar ...`)"
        if cli != "ironstar"
        else ""
    )
    return "\n".join(
        (
            "",
            f"  dashboard  {http}/",
            f"  HTTP API   {http}/schema (OpenAPI)   metrics {http}/metrics",
            f"  NATS       {stack.nats.url}   (operator credentials in {data / 'up.json'})",
            f"  data       {data}",
            f"  try        {cli} status{where}{activate}",
            f"             {cli} demo{where}",
            "",
            "ironstar: running; Ctrl-C stops everything",
        )
    )


def up(stack: Stack, on_ready: Callable[[str], object] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM.

    While it runs, `<data dir>/up.json` says where it listens, so `ironstar status` finds
    it. `on_ready(http_url)` runs in a daemon thread once everything serves (`up --demo`).
    """

    def start() -> str:
        stack.start()
        assert stack.nats is not None
        operator = stack.nats_users["operator"]
        local.write(
            stack.data_dir, stack.nats.url, stack.http_url, operator.name, operator.password
        )
        local.record_app(stack.data_dir, stack.extra_env.get(APP_VARIABLE) or app_name())
        if on_ready is not None:
            threading.Thread(target=on_ready, args=(stack.http_url,), daemon=True).start()
        return banner(stack)

    return foreground(start, stack.check, stack.stop)
