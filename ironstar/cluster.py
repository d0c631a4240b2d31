"""`ironstar cluster up`: the distributed topology as local processes on loopback.

N nats-server nodes form one JetStream cluster (routes between all of them, fsync before
ack, stream replicas min(N, 3)); writers, projectors and gateways run as their own
processes with `IRONSTAR_NATS_URL` listing every node, so a client whose node dies
reconnects to another. Every member keeps its ports for its lifetime, so a member can be
killed and started again in place (the fault tests do exactly that).

Every process gets a session of its own (the terminal's Ctrl-C reaches only the command,
which stops them in order) and inherits the data dir's lock (ironstar/datadir.py), so the
directory stays locked while any member lives. The members' pids are written to
`<data dir>/cluster.json` (see ironstar/detached.py), which `ironstar status --data-dir`
reads; with `detach` the command leaves them running and `ironstar cluster down` stops
exactly those pids.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from nats.errors import Error as NatsError

from common import bus
from common.settings import NatsSettings, app_name
from ironstar import detached, local
from ironstar.datadir import DataDirLock
from ironstar.detached import KINDS
from ironstar.natsserver import NatsServer
from ironstar.ports import busy_http, free_port, port_is_free
from ironstar.processes import STOP_GRACE_S, StartError, check_writable, spawn, stop_all, wait_ready


@dataclass
class Member:
    """One process of the cluster: `name` (`nats-1`, `writer-2`), `kind` (which program: nats,
    writer, projector, gateway), `url` (client, HTTP or metrics URL), its environment, and its
    nats-server or service process once started."""

    name: str  # e.g. "nats-1", "writer-2"
    kind: str
    url: str  # what it serves: client URL, HTTP URL or metrics URL
    env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    process: subprocess.Popen[bytes] | None = None  # a service's process

    @property
    def handle(self) -> subprocess.Popen[bytes] | None:
        """Its process (nats-server's or the service's); None before it starts."""
        return self.nats.process if self.nats is not None else self.process

    @property
    def pid(self) -> int | None:
        """Its process id; None before it starts."""
        return self.handle.pid if self.handle is not None else None

    def running(self) -> bool:
        """Whether its process was started and has not exited."""
        return self.handle is not None and self.handle.poll() is None


@dataclass
class Cluster:
    """A JetStream cluster of `nats` nodes and replicas of each service as local processes on
    loopback, in `data_dir` (locked while it runs); gateways listen from `http_port` on (0: free
    ports)."""

    data_dir: Path
    nats: int = 3
    writers: int = 2
    projectors: int = 2
    gateways: int = 2
    http_host: str = "127.0.0.1"
    http_port: int = 8000  # first gateway's port, the others follow; 0: free ports
    extra_env: dict[str, str] = field(default_factory=dict)
    detach: bool = False
    members: dict[str, Member] = field(default_factory=dict)
    lock: DataDirLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = DataDirLock(self.data_dir)

    @property
    def held(self) -> tuple[int, ...]:
        """The data dir lock's descriptor, for children to inherit (empty before it is taken)."""
        return () if self.lock.fd is None else (self.lock.fd,)

    @property
    def logs(self) -> Path:
        """Where each member writes its log, `<name>.log`."""
        return self.data_dir / "logs"

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma separated (IRONSTAR_NATS_URL)."""
        return ",".join(m.url for m in self.of("nats"))

    def of(self, kind: str) -> list[Member]:
        """The members running the program `kind` (nats, writer, projector, gateway)."""
        return [m for m in self.members.values() if m.kind == kind]

    def plan(self) -> None:
        """Choose every port and setting once, so members restart in place. StartError when
        a role has no member."""
        if self.nats < 1 or min(self.writers, self.projectors, self.gateways) < 1:
            raise StartError(
                "a cluster needs at least one of each: nats, writer, projector, gateway"
            )
        clustered = self.nats > 1
        cluster_ports = [free_port() for _ in range(self.nats)] if clustered else [0]
        for index in range(self.nats):
            name = f"nats-{index + 1}"
            server = NatsServer(
                self.data_dir / name,
                free_port(),
                name=f"ironstar-{name}",
                cluster_port=cluster_ports[index],
                routes=tuple(p for i, p in enumerate(cluster_ports) if i != index and clustered),
                monitor_port=free_port(),
            )
            self.members[name] = Member(name, "nats", server.url, nats=server)
        stores = [str((self.data_dir / m.name).resolve()) for m in self.of("nats")]
        base = {
            **os.environ,
            "IRONSTAR_NATS_URL": self.nats_url,
            "IRONSTAR_NATS_REPLICAS": str(min(self.nats, 3)),
            "IRONSTAR_GATEWAY_STORAGE_PATHS": ",".join(stores),
            **self.extra_env,
        }
        for index in range(self.writers):
            port = free_port()
            self._add(f"writer-{index + 1}", "writer", f"http://{self.http_host}:{port}/metrics", {
                **base, "IRONSTAR_WRITER_METRICS_HOST": self.http_host,
                "IRONSTAR_WRITER_METRICS_PORT": str(port),
            })  # fmt: skip
        for index in range(self.projectors):
            port = free_port()
            name = f"projector-{index + 1}"
            self._add(name, "projector", f"http://{self.http_host}:{port}/metrics", {
                **base, "IRONSTAR_PROJECTOR_NAME": name,
                "IRONSTAR_PROJECTOR_DATA_DIR": str(self.data_dir / "projectors"),
                "IRONSTAR_PROJECTOR_METRICS_HOST": self.http_host,
                "IRONSTAR_PROJECTOR_METRICS_PORT": str(port),
            })  # fmt: skip
        for index in range(self.gateways):
            port = self.http_port + index if self.http_port else free_port(self.http_host)
            if not port_is_free(self.http_host, port):
                raise StartError(busy_http(self.http_host, port, self.http_port, self.gateways))
            self._add(f"gateway-{index + 1}", "gateway", f"http://{self.http_host}:{port}/", {
                **base, "IRONSTAR_GATEWAY_HOST": self.http_host,
                "IRONSTAR_GATEWAY_PORT": str(port),
            })  # fmt: skip

    def _add(self, name: str, kind: str, url: str, env: dict[str, str]) -> None:
        self.members[name] = Member(name, kind, url, env)

    def start(self, say: bool = True, timeout_s: float = 60.0) -> None:
        """Take the data dir, start the nodes, wait for JetStream, create the replicated stream,
        start every service, and record the members (cluster.json). Waits up to `timeout_s`
        seconds for each step; StartError naming what failed."""
        if not self.members:
            self.plan()  # chooses ports only; touches nothing in the data dir
        if self.lock.fd is None:  # before touching anything in the data dir
            command = "ironstar cluster up" + (" --detach" if self.detach else "")
            self.lock.acquire(command, self.of("gateway")[0].url.rstrip("/"))
        check_writable(self.data_dir)
        self.logs.mkdir(exist_ok=True)
        for member in self.of("nats"):
            self._start_nats(member)
        self.wait_jetstream(timeout_s)
        asyncio.run(self._ensure_stream(timeout_s))
        services = [m.name for m in self.members.values() if m.kind != "nats"]
        self.start_services(services, timeout_s, say)
        self.save_state()

    async def _ensure_stream(self, timeout_s: float) -> None:
        """Create the replicated stream once, before the services race to create it."""
        settings = NatsSettings.from_env(self.of("writer")[0].env)
        deadline = time.monotonic() + timeout_s
        nc = await bus.connect(settings, name="ironstar-cluster", wait_s=timeout_s)
        try:
            while True:
                try:
                    await bus.ensure_stream(nc, settings)
                    return
                except (NatsError, TimeoutError) as exc:  # the new cluster is still electing
                    if time.monotonic() > deadline:
                        raise StartError(f"cannot create the stream: {exc!r}") from None
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def _start_nats(self, member: Member) -> None:
        assert member.nats is not None
        member.nats.keep_fds = self.held
        try:
            member.nats.start(log=self.logs / f"{member.name}.log")
        except RuntimeError as exc:
            raise StartError(str(exc)) from None

    def start_services(self, names: list[str], timeout_s: float = 60.0, say: bool = False) -> None:
        """Start the named service members and wait up to `timeout_s` seconds until each is ready;
        StartError naming the first that is not."""
        with tempfile.TemporaryDirectory(prefix="ironstar-ready-") as ready_dir:
            launches = []
            for name in names:
                member = self.members[name]
                launch = spawn(
                    member.kind,
                    member.env,
                    self.logs / f"{name}.log",
                    Path(ready_dir) / name,
                    name=name,
                    keep_fds=self.held,
                    tied=not self.detach,
                )
                member.process = launch.process
                launches.append(launch)
            wait_ready(launches, timeout_s, _say_ready if say else None)

    def start_member(self, name: str, timeout_s: float = 60.0) -> None:
        """Start one member again (after `kill` or `stop_member`), in place."""
        member = self.members[name]
        if member.kind == "nats":
            self._start_nats(member)
            self.wait_jetstream(timeout_s)
        else:
            self.start_services([name], timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL one member: no goodbye, as a crash or a power cut would."""
        self._signal_and_reap(name, signal.SIGKILL)

    def stop_member(self, name: str) -> None:
        """SIGTERM one member and wait for it (SIGKILL after the grace_s period)."""
        self._signal_and_reap(name, signal.SIGTERM)

    def _signal_and_reap(self, name: str, sig: int) -> None:
        handle = self.members[name].handle
        if handle is None:
            return
        if handle.poll() is None:
            handle.send_signal(sig)
        stop_all([handle])

    def wait_jetstream(self, timeout_s: float = 60.0) -> None:
        """Wait up to `timeout_s` seconds until every running node answers /healthz
        (JetStream is up and the node is current); StartError naming the first that does not."""
        deadline = time.monotonic() + timeout_s
        for member in self.of("nats"):
            assert member.nats is not None
            if not member.running():
                continue
            url = f"http://{member.nats.host}:{member.nats.monitor_port}/healthz"
            while not _healthy(url):
                if time.monotonic() > deadline:
                    raise StartError(f"{member.name} not healthy within {timeout_s:g} s ({url})")
                time.sleep(0.1)

    def exited(self) -> list[str]:
        """The names of the members whose process is not running."""
        return [m.name for m in self.members.values() if not m.running()]

    def stop(self) -> bool:
        """Stop every member, services before NATS; False when nothing had started."""
        if self.lock.fd is None and not any(m.running() for m in self.members.values()):
            return False
        for kind in reversed(KINDS):
            handles = [m.process for m in self.of(kind) if m.process is not None]
            stop_all(handles)
        for member in self.of("nats"):
            assert member.nats is not None
            member.nats.stop(timeout_s=STOP_GRACE_S)
        if self.lock.fd is not None:
            (self.data_dir / detached.STATE_FILE).unlink(missing_ok=True)
            self.lock.release()
        return True

    def banner(self) -> str:
        """What `cluster up` prints: the data dir, each member's URL and pid, the NATS URL."""
        lines = [f"ironstar: cluster data in {self.data_dir.resolve()} (logs in {self.logs})"]
        for member in self.members.values():
            extra = ""
            if member.nats is not None:
                extra = f"  monitor http://{member.nats.host}:{member.nats.monitor_port}/"
            lines.append(f"ironstar: {member.name:<12} {member.url}{extra}  pid {member.pid}")
        lines.append(f"ironstar: IRONSTAR_NATS_URL={self.nats_url}")
        return "\n".join(lines)

    def save_state(self) -> None:
        """Record the members (cluster.json: `cluster down`, the CLI) and the app they run."""
        detached.record(self.data_dir, {n: (m.kind, m.url, m.pid) for n, m in self.members.items()})
        local.record_app(self.data_dir, app_name(self.of("writer")[0].env))


def _say_ready(name: str, detail: str) -> None:
    print(f"ironstar: {name:<12} ready: {detail}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False
