"""`ironstar bench sse`: fan-out to many SSE clients, per-client consumers beside a broadcast.

Starts its own nats-server (fsync always), appends events straight into the stream at a
steady rate (no writer, no projector), and reads them through N real SSE connections,
each with its own filter `todo_list:g<i % groups>` (so every event reaches N / groups
clients). Each scenario runs against a fresh server process: the gateway (a durable
consumer per client) and the ceiling, the seed's in-process broadcast
(`ironstar/benchmarks/sse_baseline.py`), with the same HTTP stack and the same clients.
Figures: deliveries/s, append→receive latency p50/p99 (one clock: the bench process),
server RSS per idle connected client, and the others' p99 with one client that never reads.
The bench's own garbage collector is off while it measures (as `timeit` does): with 10,000
clients in this process its full collections paused the readers for up to 206 ms, counted
as the server's latency (session 7). The same options give the latency figure of issue 15
(`--clients N --rate 10000 --duration 10 --no-baseline --no-slow --inactive-s 300`).
`--storm` (`sse_storm.py`) and `--density` (`sse_density.py`) are modes of their own, with
the clients spread over worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import bus, envelope
from common.settings import NatsSettings
from ironstar.natsserver import NatsServer, free_port

_ID = re.compile(rb"^id: (\d+)$", re.M)
_RETRY_AFTER = re.compile(rb"(?im)^retry-after: *(\d+)")


def add(parser: argparse.ArgumentParser) -> None:
    """Register this benchmark's options on its `ironstar bench` subparser."""
    parser.add_argument("--clients", default=None,
                        help="client counts, comma separated (default 100,1000; --storm: one "
                        "count, default 10000)")  # fmt: skip
    parser.add_argument("--rate", type=int, default=10_000, help="target deliveries/s")
    parser.add_argument("--groups", type=int, default=10, help="distinct filters")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of appends")
    parser.add_argument("--no-baseline", action="store_true", help="skip the broadcast")
    parser.add_argument(
        "--no-slow", action="store_true", help="skip the scenario with a stalled client"
    )
    parser.add_argument(
        "--inactive-s", type=float, default=None,
        help="the gateway's IRONSTAR_GATEWAY_SSE_INACTIVE_S (short: consumers of a finished "
        "scenario go soon; longer for thousands of clients connecting on a loaded machine; "
        "default 5, --storm 300: the gateway's default)",
    )  # fmt: skip
    from ironstar.benchmarks import sse_density, sse_storm  # they build on this module

    sse_storm.add(parser)
    sse_density.add(parser)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Client:
    """A raw HTTP/1.0 SSE reader recording (sequence, arrival) of every message."""

    def __init__(self, port: int, path: str, record: list[tuple[int, float]] | None) -> None:
        self.port, self.path, self.record = port, path, record
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.refused = 0  # 503s answered before the feed opened

    async def open(self, receive_buffer: int = 0, attempts: int = 20) -> None:
        """Connect; a 503 is retried after its `Retry-After` (as EventSource would)."""
        for _ in range(attempts - 1):
            retry_after = await self._open(receive_buffer)
            if retry_after is None:
                return
            self.refused += 1
            await asyncio.sleep(retry_after)
        if await self._open(receive_buffer) is not None:
            raise RuntimeError(f"feed refused {attempts} times")

    async def _open(self, receive_buffer: int) -> float | None:
        """None once open; the `Retry-After` seconds of a 503."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, self.writer = await asyncio.open_connection(sock=sock)
        self.writer.write(f"GET {self.path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 503 " in status and (wait := _RETRY_AFTER.search(head)):
            self.writer.close()
            return float(wait.group(1))
        if b" 200 " not in status:
            raise RuntimeError(f"feed refused: {head[:200]!r}")
        await reader.read(1)  # the first message (retry / connected) arrived
        if self.record is not None:
            self.task = asyncio.create_task(self._read(reader, self.record))
        return None

    @staticmethod
    async def _read(reader: asyncio.StreamReader, record: list[tuple[int, float]]) -> None:
        rest = b""
        while data := await reader.read(262144):
            now = time.perf_counter()
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            record.extend((int(m), now) for m in _ID.findall(data, 0, cut))

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


def _start_server(
    service: str, nats: NatsSettings, port: int, workdir: Path, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A gateway, projector or the broadcast baseline as a process, once it serves."""
    ready = workdir / f"{service}-{port}.ready"
    ready.unlink(missing_ok=True)  # a restart on the same port waits for its own
    log = open(workdir / f"{service}-{port}.log", "ab")  # noqa: SIM115 - lives with the process
    if service in ("gateway", "projector"):
        cmd = [sys.executable, "-m", "ironstar", service, "--ready-file", str(ready)]
    else:
        cmd = [sys.executable, "-m", "ironstar.benchmarks.sse_baseline", nats.url, nats.prefix,
               str(port), str(ready)]  # fmt: skip
    env = {**os.environ, "IRONSTAR_NATS_URL": nats.url, "IRONSTAR_NATS_PREFIX": nats.prefix,
           "IRONSTAR_NATS_STREAM": nats.stream, "IRONSTAR_GATEWAY_PORT": str(port),
           "IRONSTAR_GATEWAY_SSE_MAX_CONNECTIONS": "100000",
           "IRONSTAR_GATEWAY_SSE_MAX_CONSUMERS_PER_PRINCIPAL": "100000",
           "IRONSTAR_GATEWAY_SSE_INACTIVE_S": "5", "IRONSTAR_LIMIT_REQUESTS_PER_S": "0",
           **(extra or {})}  # fmt: skip
    process = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{service} did not start; see {workdir}")
        time.sleep(0.02)
    return process


async def _append(
    nc: Any, nats: NatsSettings, groups: int, rate_per_s: float, duration_s: float
) -> dict[int, float]:
    """{stream sequence: when it was sent} of `rate_per_s` appends/s for `duration_s` s."""
    start = time.perf_counter()
    appended = await append(
        nc, nats, groups, rate_per_s, lambda: time.perf_counter() - start >= duration_s
    )
    return {seq: sent for seq, _, sent in appended}


async def append(
    nc: Any, nats: NatsSettings, groups: int, rate_per_s: float, done: Callable[[], bool]
) -> list[tuple[int, int, float]]:
    """Append `rate_per_s` events/s round-robin to the groups `todo_list:g<i>` until `done()`:
    (stream sequence, group, when it was sent (time.perf_counter)) of each."""
    js = nc.jetstream(publish_async_max_pending=100_000)
    bodies = [
        envelope.encode(
            envelope.new_envelope(
                "todo_list",
                f"g{g}",
                1,
                "todo_added",
                {"todo_id": "t", "text": "x" * 64},
                schema=2,
                occurred_at="2026-01-01T00:00:00Z",
            )
        )
        for g in range(groups)
    ]
    subjects = [f"{nats.prefix}.events.todo_list.g{g}" for g in range(groups)]
    pending: list[tuple[Any, int, float]] = []
    start, n = time.perf_counter(), 0
    while not done():
        for _ in range(int((time.perf_counter() - start) * rate_per_s) - n):
            future = await js.publish_async(subjects[n % groups], bodies[n % groups])
            pending.append((future, n % groups, time.perf_counter()))
            n += 1
        await asyncio.sleep(0.005)
    return [((await future).seq, group, sent) for future, group, sent in pending]


async def _window(
    nc: Any, nats: NatsSettings, args: argparse.Namespace, appends_per_s: float,
    record: list[tuple[int, float]], clients: int,
) -> tuple[dict[int, float], float, float]:  # fmt: skip
    """The measured window: appends for `args.duration` s, then up to 5 s for the clients to
    receive them, the bench's own collector off (module docstring); (what was sent when,
    the window's start and end, time.perf_counter)."""
    gc.disable()
    try:
        started = time.perf_counter()
        sent = await _append(nc, nats, args.groups, appends_per_s, args.duration)
        ended = time.perf_counter()
        expected = len(sent) * clients // args.groups
        deadline = time.perf_counter() + 5
        while len(record) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the clients only append to a list: poll it
    finally:
        gc.enable()
    epoch = time.time() - time.perf_counter()  # the window in unix seconds, to match logs
    print(f"bench sse: {clients} clients: window (unix s) {epoch + started:.3f}-"
          f"{epoch + ended:.3f}", file=sys.stderr)  # fmt: skip
    return sent, started, ended


async def _scenario(
    server: str, nats: NatsSettings, nc: Any, workdir: Path, args: argparse.Namespace,
    clients: int, slow: bool, nats_pid: int,
) -> dict[str, float]:  # fmt: skip
    port = free_port()
    tag = f"p{port}c"  # client ids of this scenario only: no consumer is reused
    inactive = {"IRONSTAR_GATEWAY_SSE_INACTIVE_S": str(args.inactive_s or 5.0)}
    process = _start_server(server, nats, port, workdir, inactive)
    record: list[tuple[int, float]] = []
    opened: list[_Client] = []
    try:
        before = _rss_kib(process.pid)
        gate = asyncio.Semaphore(32)

        async def connect(i: int) -> None:
            path = f"/api/events?topics=todo_list:g{i % args.groups}&client_id={tag}{i}"
            client = _Client(port, path, record)
            async with gate:
                await client.open()
            opened.append(client)

        await asyncio.gather(*(connect(i) for i in range(clients)))
        idle = _rss_kib(process.pid)
        if slow:  # one more client, reading nothing, on every group's events
            stalled = _Client(port, f"/api/events?topics=todo_list&client_id={tag}slow", None)
            await stalled.open(receive_buffer=4096)
            opened.append(stalled)
        appends_per_s = args.rate * args.groups / clients  # for `args.rate` deliveries/s
        cpu, nats_cpu, own_cpu = _cpu_s(process.pid), _cpu_s(nats_pid), time.process_time()
        sent, started, ended = await _window(nc, nats, args, appends_per_s, record, clients)
        expected = len(sent) * clients // args.groups
        cpu, nats_cpu = _cpu_s(process.pid) - cpu, _cpu_s(nats_pid) - nats_cpu
        own_cpu = time.process_time() - own_cpu
        latencies = sorted(t - sent[s] for s, t in record if s in sent)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        return {
            # received while appending (a saturated server shows here, not in the tail)
            "deliveries_per_s": sum(started <= t <= ended for _, t in record) / (ended - started),
            "delivered_fraction": len(latencies) / max(expected, 1),
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
            "rss_kib_per_idle_client": (idle - before) / clients,
            "refused_503_then_opened": sum(c.refused for c in opened),
            "server_cpu_us_per_delivery": cpu / max(len(record), 1) * 1e6,
            "nats_cpu_us_per_delivery": nats_cpu / max(len(record), 1) * 1e6,
            "bench_cpu_us_per_delivery": own_cpu / max(len(record), 1) * 1e6,
        }
    finally:
        for client in opened:
            client.close()
        process.terminate()
        process.wait(15)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each client count against the gateway and the broadcast baseline (and one stalled client):
    `{"<server>_<clients>_deliveries_per_s", "..._p99_ms", "..._server_cpu_us_per_delivery",
    "gateway_vs_baseline_...": ratio, ...}`."""
    from ironstar.benchmarks import sse_density, sse_storm  # they build on this module

    if args.storm:
        return await sse_storm.run(args)
    if args.density:
        return await sse_density.run(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ironstar-bench-sse-") as tmp:
        workdir = Path(tmp)
        server = NatsServer(workdir / "nats", free_port()).start(log=workdir / "nats.log")
        try:
            counts = [int(c) for c in (args.clients or "100,1000").split(",")]
            # every client holds a consumer, and those of the last scenario linger
            # IRONSTAR_GATEWAY_SSE_INACTIVE_S: room for two scenarios and the reserve
            nats = NatsSettings(url=server.url, prefix="bench", stream="BENCH_SSE",
                                max_consumers=2 * max(counts) + 200)  # fmt: skip
            nc = await bus.connect(nats, name="bench-sse")
            await bus.ensure_stream(nc, nats)
            assert server.process is not None
            pid = server.process.pid
            for clients in counts:
                sse_servers = ["gateway"] if args.no_baseline else ["gateway", "baseline"]
                for sse in sse_servers:
                    result = await _scenario(sse, nats, nc, workdir, args, clients, False, pid)
                    figures.update({f"{sse}_{clients}_{k}": v for k, v in result.items()})
            top = max(counts)
            if not args.no_slow:
                slowed = await _scenario("gateway", nats, nc, workdir, args, top, True, pid)
                figures.update({f"gateway_{top}_with_slow_{k}": v for k, v in slowed.items()})
                figures[f"gateway_{top}_p99_change_with_slow_client"] = (
                    slowed["p99_ms"] / max(figures[f"gateway_{top}_p99_ms"], 1e-9) - 1
                )
            if not args.no_baseline:
                for clients in counts:
                    figures[f"gateway_vs_baseline_throughput_{clients}"] = figures[
                        f"gateway_{clients}_deliveries_per_s"
                    ] / max(figures[f"baseline_{clients}_deliveries_per_s"], 1e-9)
                    figures[f"gateway_vs_baseline_cpu_per_delivery_{clients}"] = figures[
                        f"gateway_{clients}_server_cpu_us_per_delivery"
                    ] / max(figures[f"baseline_{clients}_server_cpu_us_per_delivery"], 1e-9)
            await nc.drain()
        finally:
            server.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return figures
