"""The NATS side of the scale benches (`ironstar bench sse --storm/--density`): one nats-server,
or with `--cluster` three clustered ones (routes between all, the stream replicated on all
three, as `ironstar cluster` runs it), each with its monitoring port; and `Watch`, which samples
every node's `/healthz` and RSS while a storm lasts and names the JetStream meta leader (from
`/jsz`), whose CPU and RSS are reported (issue 15: nats-server's meta layer is what reconnect
storms strain, nats-server#5609, #4841).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from nats.errors import Error as NatsError

from common import bus
from common.settings import NatsSettings
from ironstar.benchmarks.sse import _cpu_s, _rss_kib
from ironstar.natsserver import NatsServer, free_port

START_S = 60.0  # how long a cluster may take to elect and create the stream


def _get(port: int, path: str, timeout_s: float) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as answer:
        return int(answer.status), answer.read()


def health(port: int) -> tuple[bool, float]:
    """(the node's `/healthz` said ok within 2 s, seconds it took)."""
    started = time.perf_counter()
    try:
        ok = json.loads(_get(port, "/healthz", 2)[1]).get("status") == "ok"
    except (OSError, ValueError):
        ok = False
    return ok, time.perf_counter() - started


def jsz(port: int) -> dict[str, Any]:
    """The node's `/jsz` (JetStream totals, and the meta group's leader on a cluster)."""
    body: dict[str, Any] = json.loads(_get(port, "/jsz", 10)[1])
    return body


@dataclass
class Nodes:
    """The running nats-servers of a bench (one, or three clustered)."""

    servers: list[NatsServer]

    @property
    def url(self) -> str:
        """Every node's client URL, comma separated (`IRONSTAR_NATS_URL`)."""
        return ",".join(s.url for s in self.servers)

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process is not None]

    def leader(self) -> int:
        """The index of the JetStream meta leader (0 on a single server, -1 when none answers)."""
        if len(self.servers) == 1:
            return 0
        names = [s.name for s in self.servers]
        for server in self.servers:
            with contextlib.suppress(OSError, ValueError):
                name = jsz(server.monitor_port).get("meta_cluster", {}).get("leader")
                if name in names:
                    return names.index(name)
        return -1


@contextlib.asynccontextmanager
async def nodes(workdir: Path, count: int, settings: NatsSettings) -> AsyncIterator[Nodes]:
    """`count` nats-servers (clustered when more than one) with the stream of `settings`
    (its `url` is ignored) created on them, for the block's duration."""
    routes = [free_port() for _ in range(count)] if count > 1 else [0]
    servers = [
        NatsServer(
            workdir / f"nats-{i + 1}",
            free_port(),
            name=f"bench-nats-{i + 1}",
            cluster_port=routes[i],
            routes=tuple(p for j, p in enumerate(routes) if j != i),
            monitor_port=free_port(),
        )
        for i in range(count)
    ]
    try:
        for index, server in enumerate(servers):
            server.start(log=workdir / f"nats-{index + 1}.log")
        group = Nodes(servers)
        await _stream(settings, group.url)
        yield group
    finally:
        for server in servers:
            server.stop()


async def _stream(settings: NatsSettings, url: str) -> None:
    """Create the stream once the nodes answer (a new cluster elects its meta leader first)."""
    config = msgspec.structs.replace(settings, url=url)
    nc = await bus.connect(config, name="bench-sse-nodes", wait_s=START_S)
    deadline = time.monotonic() + START_S
    try:
        while True:
            try:
                await bus.ensure_stream(nc, config)
                return
            except (NatsError, TimeoutError):  # the new cluster is still electing
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


@dataclass
class Watch:
    """Every node's health, RSS and the meta leader, sampled every 0.5 s while a storm lasts."""

    group: Nodes
    checks: list[list[tuple[bool, float]]] = field(default_factory=list)
    rss_kib: list[list[int]] = field(default_factory=list)
    leaders: list[int] = field(default_factory=list)
    _cpu: list[float] = field(default_factory=list)
    _started: float = 0.0

    async def run(self) -> None:
        """Sample until cancelled."""
        servers = self.group.servers
        self.checks = [[] for _ in servers]
        self.rss_kib = [[] for _ in servers]
        self._cpu, self._started = [_cpu_s(p) for p in self.group.pids], time.perf_counter()
        while True:
            for index, server in enumerate(servers):
                self.checks[index].append(await asyncio.to_thread(health, server.monitor_port))
                self.rss_kib[index].append(_rss_kib(self.group.pids[index]))
            self.leaders.append(await asyncio.to_thread(self.group.leader))
            await asyncio.sleep(0.5)

    def figures(self) -> dict[str, Any]:
        """Health over all nodes; with a cluster, per node and the meta leader's load."""
        spent = max(time.perf_counter() - self._started, 1e-9)
        cpu = [(_cpu_s(p) - c) / spent for p, c in zip(self.group.pids, self._cpu, strict=True)]
        every = [c for node in self.checks for c in node]
        out: dict[str, Any] = {
            "nats_healthz_checks": len(every),
            "nats_healthz_failed": sum(not ok for ok, _ in every),
            "nats_healthz_slowest_ms": max((s for _, s in every), default=0) * 1000,
            "nats_rss_mib_max": max((r for node in self.rss_kib for r in node), default=0) / 1024,
        }
        if len(self.group.servers) == 1:
            return out
        nodes = []
        for index, server in enumerate(self.group.servers):
            checks = self.checks[index]
            nodes.append({
                "node": server.name, "healthz_checks": len(checks),
                "healthz_failed": sum(not ok for ok, _ in checks),
                "healthz_slowest_ms": max((s for _, s in checks), default=0) * 1000,
                "rss_mib_max": max(self.rss_kib[index], default=0) / 1024,
                "cpu_share_of_a_core": cpu[index],
            })  # fmt: skip
        seen = sorted({self.group.servers[i].name for i in self.leaders if i >= 0})
        leader = self.group.leader()
        out["nats_nodes"] = nodes
        out["meta_leaders_seen"] = seen  # more than one: the meta leader changed meanwhile
        if leader >= 0:
            out["meta_leader"] = self.group.servers[leader].name
            out["meta_leader_cpu_share_of_a_core"] = cpu[leader]
            out["meta_leader_rss_mib_max"] = nodes[leader]["rss_mib_max"]
            out["meta_leader_healthz_failed"] = nodes[leader]["healthz_failed"]
        return out
