"""`ironstar bench append`: the write path beside the JetStream publish ceiling, same run.

Starts its own nats-server (`sync_interval: always`: fsync before every ack) in a temp dir,
one writer and one gateway process, then measures from this process:

- ceiling: raw nats-py `js.publish_async` of an envelope of the same size with the same
  headers (`Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence`), `--concurrency` in flight;
- nats: `add_todo` commands as NATS requests to the writer, `--concurrency` in flight;
- http: the same commands through the gateway over keep-alive HTTP/1.1 connections,
  closed loop (`--concurrency` in flight), then open loop at `--rate` commands/s.

Every phase spreads its commands over `--aggregates` todo lists, each in-flight worker owning
its own lists (many users at once, as in production): the writer's per-aggregate lock does
not serialise them, and each list is new to the writer on its first command (one read).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client

from common import bus
from common.envelope import Metadata, encode, new_envelope, uuid7
from common.messages import CommandRequest
from common.subjects import Subjects
from ironstar.natsserver import free_port
from ironstar.up import Stack

PREFIX = "bench"
STREAM = "BENCH_EVENTS"
_json = msgspec.json.Encoder()


def add(parser: argparse.ArgumentParser) -> None:
    """Register this benchmark's options on its `ironstar bench` subparser."""
    parser.add_argument("--commands", type=int, default=6000, help="commands per phase")
    parser.add_argument("--concurrency", type=int, default=64, help="commands in flight")
    parser.add_argument("--aggregates", type=int, default=2000, help="todo lists written to")
    parser.add_argument("--rate", type=int, default=1000, help="open-loop HTTP commands/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the open loop")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the phases")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Append through NATS, then HTTP, in interleaved rounds, beside the raw JetStream publish
    ceiling; `{"<phase>_per_s": commands a second, "<phase>_cpu_us_per_command": per process,
    "ratio_<phase>_to_ceiling": ...}`. Raises StartError when its stack cannot start."""
    with tempfile.TemporaryDirectory(prefix="ironstar-bench-") as directory:
        stack = Stack(
            Path(directory),
            http_port=free_port(),
            services=("writer", "gateway"),
            extra_env={
                "IRONSTAR_NATS_PREFIX": PREFIX,
                "IRONSTAR_NATS_STREAM": STREAM,
                "IRONSTAR_LIMIT_REQUESTS_PER_S": "0",  # one client drives the whole load
            },
        )
        try:
            stack.start(say=False)
            assert stack.nats is not None
            assert stack.nats.process is not None
            pids = {name: process.pid for name, process in stack.processes.items()}
            pids["nats-server"] = stack.nats.process.pid
            operator = stack.nats_users["operator"]  # publishes the raw ceiling itself
            credentials = {"user": operator.name, "password": operator.password}
            return await _measure(args, stack.nats.url, credentials, stack.http_port, pids)
        finally:
            stack.stop()


async def _measure(
    args: argparse.Namespace,
    url: str,
    credentials: dict[str, str],
    http_port: int,
    pids: dict[str, int],
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "fsync": "always",
        "aggregates": args.aggregates,
        "concurrency": args.concurrency,
        "commands_per_phase": args.commands,
        "event_bytes": len(_envelope("ceiling-0", 1)),
    }
    nc = await nats.connect(url, **credentials)
    pool = await _Pool.open(http_port, args.concurrency)
    try:
        phases = {
            "ceiling": _publisher(nc),
            "nats": _commander(nc),
            "http": _poster(pool, "closed"),
        }
        latencies: dict[str, list[float]] = {name: [] for name in phases}
        elapsed = dict.fromkeys(phases, 0.0)
        cpu = {name: dict.fromkeys([*pids, "client"], 0.0) for name in phases}
        for round in range(args.rounds):  # interleaved, so a noisy disk or CPU hits all alike
            for name, send in phases.items():
                before = _cpu_seconds(pids)
                elapsed[name] += await _closed_loop(args, send, round, latencies[name])
                for process, used in _cpu_seconds(pids).items():
                    cpu[name][process] += used - before[process]
        for name in phases:
            done = len(latencies[name])
            figures[f"{name}_per_s"] = done / elapsed[name]
            figures.update(_percentiles(name, latencies[name]))
            figures[f"{name}_cpu_us_per_command"] = ", ".join(
                f"{process} {used / done * 1e6:.0f}" for process, used in cpu[name].items() if used
            )
        figures["ratio_nats_to_ceiling"] = figures["nats_per_s"] / figures["ceiling_per_s"]
        figures["ratio_http_to_ceiling"] = figures["http_per_s"] / figures["ceiling_per_s"]
        figures.update(await _open_loop(args, _poster(pool, "open")))
    finally:
        pool.close()
        await nc.drain()
    return figures


Send = Callable[[int, int], Awaitable[None]]  # (aggregate number, command number)


async def _closed_loop(
    args: argparse.Namespace, send: Send, round: int, latencies: list[float]
) -> float:
    """`concurrency` workers, each sending to its own aggregates, one command at a time."""
    per_worker = max(1, args.commands // args.rounds // args.concurrency)

    async def worker(w: int) -> None:
        mine = range(w, args.aggregates, args.concurrency)
        for n in range(round * per_worker, (round + 1) * per_worker):
            started = time.perf_counter()
            await send(mine[n % len(mine)], n)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
    return time.perf_counter() - started


async def _open_loop(args: argparse.Namespace, send: Send) -> dict[str, Any]:
    """Commands sent on a fixed schedule; latency counts from the scheduled time."""
    total = int(args.rate * args.seconds)
    latencies: list[float] = []
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        due = start + i / args.rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await send(i % args.aggregates, 10_000 + i)
        latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(one(i) for i in range(total)))
    achieved = total / (time.perf_counter() - start)
    name = f"http_at_{args.rate}"
    return {f"{name}_achieved_per_s": achieved, **_percentiles(name, latencies)}


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each process and by this one."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {"client": time.process_time()}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def _percentiles(name: str, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 for q in (0.5, 0.99))
    return {f"{name}_p50_ms": p50, f"{name}_p99_ms": p99}


def _envelope(aggregate_id: str, version: int) -> bytes:
    """An event as the writer would store it for `add_todo`."""
    metadata = Metadata(command_id=uuid7(), correlation_id=uuid7(), causation_id=uuid7())
    payload = {"todo_id": f"todo-{version}", "text": f"write the benchmark {version}"}
    return encode(
        new_envelope(
            "todo_list", aggregate_id, version, "todo_added", payload, schema=2, metadata=metadata
        )
    )


def _publisher(nc: Client) -> Send:
    js = nc.jetstream()
    subjects = Subjects(PREFIX)
    last: dict[int, int] = {}

    async def send(aggregate: int, n: int) -> None:
        expected = last.get(aggregate, 0)
        headers = {
            "Nats-Msg-Id": f"{uuid7()}:0",
            "Nats-Expected-Last-Subject-Sequence": str(expected),
        }
        subject = subjects.events("todo_list", f"ceiling-{aggregate}")
        future = await js.publish_async(
            subject, _envelope(f"ceiling-{aggregate}", n), headers=headers
        )
        last[aggregate] = (await asyncio.wait_for(future, 5.0)).seq

    return send


def _commander(nc: Client) -> Send:
    subject = Subjects(PREFIX).command("todo_list")

    async def send(aggregate: int, n: int) -> None:
        request = CommandRequest(
            aggregate_id=f"nats-{aggregate}",
            type="add_todo",
            payload={"todo_id": f"todo-{n}", "text": f"write the benchmark {n}"},
            command_id=uuid7(),
            correlation_id=uuid7(),
        )
        await bus.request(nc, subject, _json.encode(request), 5.0, "writer")

    return send


class _Pool:
    """Keep-alive HTTP/1.1 connections to the gateway; just enough client to measure it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.idle = asyncio.Queue()
        self.all: list[asyncio.StreamWriter] = []

    @classmethod
    async def open(cls, port: int, connections: int) -> _Pool:
        pool = cls(port)
        for _ in range(connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            pool.all.append(writer)
            pool.idle.put_nowait((reader, writer))
        return pool

    async def post(self, path: str, body: bytes) -> int:
        reader, writer = await self.idle.get()
        try:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:  # the server closed an idle keep-alive connection: reopen
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.all.append(writer)
                writer.write(request)
                status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            return int(status_line.split()[1])
        finally:
            self.idle.put_nowait((reader, writer))

    def close(self) -> None:
        for writer in self.all:
            writer.close()


def _poster(pool: _Pool, tag: str) -> Send:
    async def send(aggregate: int, n: int) -> None:
        body = {
            "type": "add_todo",
            "payload": {"todo_id": f"todo-{n}", "text": f"write the benchmark {n}"},
        }
        status = await pool.post(
            f"/api/commands/todo_list/http-{tag}-{aggregate}", _json.encode(body)
        )
        if status != 200:
            raise RuntimeError(f"the gateway answered {status} during the benchmark")

    return send
