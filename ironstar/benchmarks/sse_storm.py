"""`ironstar bench sse --storm`: a gateway holding N clients is killed -9 while appends go on,
and every client reconnects with `Last-Event-ID` (issue 15, reconnect storm).

Starts its own nats-server (fsync always, monitoring port on) and a gateway; N clients
(`sse_fleet.py`, spread over worker processes) open a feed each with their own `client_id`,
so each has its own durable consumer. Appends run at `--rate` deliveries/s (round-robin
over `--groups` filters); after `--warmup` s the gateway is killed -9 and started again on
its port (or, with `--second-gateway`, the clients go to a second gateway started before
the kill). Appends go on until every client reopened and `--tail-s` more, then stop.
Figures: seconds from the kill until every client reopened and until every client caught up
(received an event appended after it reopened, everything before it gap-free); each
client's ids checked against the stream (exact, gaps, duplicates); the answers by status
(anything but 200 or 503 with `Retry-After` is a failure); nats-server health (`/healthz`
polled every 0.5 s) and its RSS and CPU during the storm; the CPU of the gateway and of the
bench itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import resource
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from common import bus
from common.settings import NatsSettings
from ironstar.benchmarks import sse_fleet, sse_nodes
from ironstar.benchmarks.sse import _cpu_s, _rss_kib, _start_server, append
from ironstar.benchmarks.sse_nodes import Nodes
from ironstar.natsserver import free_port

PER_WORKER = 2_500  # clients per worker process (fd limit 20,000; one core per Python loop)


def add(parser: argparse.ArgumentParser) -> None:
    """This mode's options on `ironstar bench sse`."""
    parser.add_argument("--storm", action="store_true",
                        help="kill -9 a gateway holding --clients clients (default 10000) and "
                        "measure their reconnect storm")  # fmt: skip
    parser.add_argument("--second-gateway", action="store_true",
                        help="--storm: clients reconnect to a second gateway, not the restarted "
                        "one")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0,
                        help=f"client processes (0: one per {PER_WORKER:,} clients)")  # fmt: skip
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="--storm: s of appends before the kill"
    )
    parser.add_argument("--tail-s", type=float, default=5.0,
                        help="--storm: s of appends after every client reopened")  # fmt: skip
    parser.add_argument(
        "--workdir", help="--storm: keep the servers' logs here (default: a temp dir)"
    )
    parser.add_argument("--cluster", action="store_true",
                        help="--storm: 3 clustered nats-servers, the stream on all three "
                        "(default 5000 clients); reports each node's /healthz and the meta "
                        "leader's CPU and RSS")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=180.0,
                        help="--storm: s after the kill the storm may take at most")  # fmt: skip


class Workers:
    """The client processes and their pipes."""

    def __init__(self, clients: int, count: int, groups: int, tag: str, port: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        share = math.ceil(clients / count)
        for first in range(0, clients, share):
            mine, theirs = spawn.Pipe()
            process = spawn.Process(
                target=sse_fleet.main,
                args=(theirs, first, min(share, clients - first), groups, tag, port),
                daemon=True,
            )
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    async def connect(self) -> dict[str, Any]:
        """Open every client (64 opening at once in all): seconds it took, answers by status."""
        connected = await self.ask("connect", max(4, 64 // len(self.pipes)))
        statuses = sum((Counter(c["statuses"]) for c in connected), Counter[str]())
        return {"connect_s": max(c["seconds"] for c in connected),
                "connect_statuses": dict(statuses)}  # fmt: skip

    async def ask(self, *command: Any) -> list[dict[str, Any]]:
        """Send `command` to every worker; their answers."""
        for pipe in self.pipes:
            pipe.send(command)
        return [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    def cpu_s(self) -> float:
        """CPU seconds the workers used so far."""
        return sum(_cpu_s(p.pid) for p in self.processes if p.pid is not None and p.is_alive())

    async def stop(self) -> None:
        """Stop every worker (by its own pid), however far it got."""
        with contextlib.suppress(TimeoutError, OSError, EOFError):
            await asyncio.wait_for(self.ask("stop"), 30)
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


@dataclass
class Stack:
    """What a scale bench runs against: its own nats-server (monitoring on) and stream, sized
    for `clients` consumers; `env` for its gateways."""

    args: argparse.Namespace
    clients: int
    nats: NatsSettings
    nc: Any
    workdir: Path
    group: Nodes
    env: dict[str, str]

    @property
    def nats_pid(self) -> int:
        """The (first) nats-server's pid."""
        return self.group.pids[0]

    def gateway(self, port: int) -> subprocess.Popen[bytes]:
        """A gateway on `port`, once it serves."""
        return _start_server("gateway", self.nats, port, self.workdir, self.env)

    def workers(self, port: int) -> Workers:
        """The client processes, each client's `client_id` tagged with the gateway's `port`."""
        count = self.args.workers or math.ceil(self.clients / PER_WORKER)
        return Workers(self.clients, count, self.args.groups, f"p{port}c", port)


@contextlib.asynccontextmanager
async def stack(args: argparse.Namespace, clients: int) -> AsyncIterator[Stack]:
    """A `Stack` for the bench's duration (descriptors raised to the hard limit meanwhile): one
    nats-server, or three clustered with the stream on all three (`--cluster`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = 3 if getattr(args, "cluster", False) else 1
    with tempfile.TemporaryDirectory(prefix="ironstar-bench-sse-") as tmp:
        workdir = Path(args.workdir or tmp)
        nats = NatsSettings(url="", prefix="bench", stream="BENCH_SSE", replicas=count,
                            max_consumers=2 * clients + 200)  # fmt: skip
        try:
            async with sse_nodes.nodes(workdir, count, nats) as group:
                nats = msgspec.structs.replace(nats, url=group.url)
                nc = await bus.connect(nats, name="bench-sse-scale")
                env = {"IRONSTAR_GATEWAY_SSE_INACTIVE_S": str(args.inactive_s or 300.0)}
                yield Stack(args, clients, nats, nc, workdir, group, env)
                await nc.drain()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The storm (see the module docstring): one dict of figures."""
    clients = int(args.clients or (5_000 if args.cluster else 10_000))
    async with stack(args, clients) as bench:
        figures = {"clients": clients, "nats_nodes_count": len(bench.group.servers)}
        return {**figures, **await _storm(bench)}


async def _storm(bench: Stack) -> dict[str, Any]:
    args, clients, nats, nc = bench.args, bench.clients, bench.nats, bench.nc
    ports = [free_port(), free_port()] if args.second_gateway else [free_port()]
    port = ports[0]
    gateways = [bench.gateway(p) for p in ports]
    workers = bench.workers(port)
    figures: dict[str, Any] = {"workers": len(workers.processes)}
    try:
        figures.update(await workers.connect())
        figures["gateway_rss_mib_connected"] = _rss_kib(gateways[0].pid) / 1024
        stop = asyncio.Event()
        appends_per_s = args.rate * args.groups / clients
        appending = asyncio.create_task(append(nc, nats, args.groups, appends_per_s, stop.is_set))
        await asyncio.sleep(args.warmup)
        target = gateways[-1]
        watch = sse_nodes.Watch(bench.group)
        watching = asyncio.create_task(watch.run())
        nats_cpu = sum(map(_cpu_s, bench.group.pids))
        bench_cpu, own = workers.cpu_s(), time.process_time()
        killed = time.perf_counter()
        await workers.ask("target", ports[-1], killed)
        gateways[0].kill()
        gateways[0].wait()
        if len(gateways) == 1:
            gateways[0] = target = await asyncio.to_thread(bench.gateway, port)
            figures["gateway_restarted_after_s"] = time.perf_counter() - killed
        target_cpu = _cpu_s(target.pid)
        reopened_s = await _until_reopened(workers, clients, killed, args.deadline)
        figures["all_reopened_after_s"] = reopened_s
        await asyncio.sleep(args.tail_s)
        stop.set()
        appended = await appending
        final = {group: seq for seq, group, _ in appended}
        figures["drained_after_s"] = await until_complete(
            workers, clients, final, killed, args.deadline
        )
        storm_s = time.perf_counter() - killed
        watching.cancel()
        figures["storm_s"] = storm_s
        figures["nats_cpu_share_of_a_core"] = (
            sum(map(_cpu_s, bench.group.pids)) - nats_cpu
        ) / storm_s
        figures["gateway_cpu_share_of_a_core"] = (_cpu_s(target.pid) - target_cpu) / storm_s
        figures["bench_cpu_share_of_a_core"] = (
            workers.cpu_s() - bench_cpu + time.process_time() - own
        ) / storm_s
        figures["gateway_rss_mib_after"] = _rss_kib(target.pid) / 1024
        figures.update(watch.figures())
        ports = [server.monitor_port for server in bench.group.servers]
        every = [await asyncio.to_thread(sse_nodes.jsz, port) for port in ports]
        figures["nats_consumers"] = sum(j.get("consumers", 0) for j in every)  # of all nodes
        figures["nats_memory_bytes"] = sum(j.get("memory", 0) for j in every)
        figures["appended"] = len(appended)
        figures.update(verdict(await workers.ask("verify", appended), clients))
        return figures
    finally:
        await workers.stop()
        for gateway in gateways:
            if gateway.poll() is None:
                stop_gateway(gateway)


def stop_gateway(gateway: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM a gateway, SIGKILL it after `grace_s` (a loaded machine may take longer to let go
    of 10,000 feeds: the figures are printed all the same)."""
    gateway.terminate()
    try:
        gateway.wait(grace_s)
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait()


async def _until_reopened(workers: Workers, clients: int, killed: float, deadline: float) -> float:
    """Seconds from the kill until every client reopened (inf past `deadline`)."""
    while time.perf_counter() - killed < deadline:
        if sum(p["reopened"] for p in await workers.ask("progress", {})) >= clients:
            return time.perf_counter() - killed
        await asyncio.sleep(0.5)
    return math.inf


async def until_complete(
    workers: Workers, clients: int, final: dict[int, int], since: float, deadline: float
) -> float:
    """Seconds from `since` until every client holds its group's last event (inf past
    `deadline` s)."""
    while time.perf_counter() - since < deadline:
        if sum(p["complete"] for p in await workers.ask("progress", final)) >= clients:
            return time.perf_counter() - since
        await asyncio.sleep(0.5)
    return math.inf


def verdict(answers: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    caught = sorted(s for a in answers for s in a["caught_s"])
    statuses: Counter[str] = Counter()
    for a in answers:
        statuses.update(a["statuses"]["storm"])
    failures = sum(n for status, n in statuses.items() if "failure" in status)
    finite = [s for s in caught if math.isfinite(s)]
    after = [s for a in answers for s in a["after_open_s"]]
    return {
        "clients_exact": sum(a["exact"] for a in answers),
        "clients_not_caught_up": clients - len(finite),
        "gaps": sum(a["gaps"] for a in answers),
        "duplicates": sum(a["duplicates"] for a in answers),
        "snapshots": sum(a["snapshots"] for a in answers),
        "received": sum(a["received"] for a in answers),
        "all_caught_up_after_s": caught[-1] if caught else math.inf,
        "caught_up_p50_s": statistics.median(finite) if finite else math.inf,
        "reopen_to_caught_up_p50_s": statistics.median(after) if after else math.inf,
        "reopen_to_caught_up_max_s": max(after, default=math.inf),
        "storm_statuses": dict(statuses),
        "connect_statuses_at_end": dict(
            sum((Counter(a["statuses"]["connect"]) for a in answers), Counter[str]())
        ),
        "storm_failures": failures,
        "failure_examples": [f for a in answers for f in a["failures"]][:5],
        "503_examples": [r for a in answers for r in a["refusals"]][:3],
        "keepalives_per_client_min": min(a["keepalives_min"] for a in answers),
        "longest_silence_s": max(a["longest_silence_s"] for a in answers),
    }
