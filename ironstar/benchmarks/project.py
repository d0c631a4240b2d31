"""`ironstar bench project`: projector catch-up over stored events, beside two ceilings.

A nats-server in a temp dir gets `--events` events of valid histories from the loaded
app (`App.events`; the example's: todo lists and user profiles, some multi-event
commands), loaded with `publish_async` windows.
The server runs with its default `sync_interval` (not `always`): only loading is affected,
consumption never writes to the stream. Then, in one run:

- `nats_only`: the projector's feed over every event, acking each batch, applying nothing;
- `duckdb_only`: decoding and applying the same bodies in catch-up batches as the
  projector's (from the catch-up size, growing with the aggregates up to its maximum), no
  NATS, the next batch decoded while one is applied (as the projector does while catching
  up); then, on that file (not in its rate), the tail's first `FLOOR_BATCHES` events one per batch:
  the live tail's floor (`tail_floor_p50_ms`, `tail_floor_p99_ms`), the least time an
  event waits to be applied when it meets no batch in progress, no NATS and no query;
- `end_to_end`: a projector process (`ironstar projector`, as `ironstar up` runs it; far
  behind, it catches up through its feed process) from an empty file until a query with
  `min_seq` = the last sequence answers; its CPU is that of its process and children;
- `tail`: then, over that history, `--tail-rate` more events per second for
  `--tail-seconds` (open loop, the same app's histories going on), each published on its
  own, one in 10 timed from its ack until a query with its `min_seq` answers (applied and
  readable), reported as p50/p99 milliseconds, beside what the projector's log says of
  the tail's batches (`batch_applied`: events per batch, milliseconds to apply p50 and
  p99, and the share of the tail's time spent applying);
- `rebuild`: then a blue/green rebuild of every projection of that projector, from its
  start until its status says done (what a user runs after a projection's version changed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client

from common import builtin, bus, catalogue
from common import envelope as codec
from common.envelope import Envelope
from common.messages import QueryRequest
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import Subjects
from common.telemetry import configure_logging
from ironstar import processes
from ironstar.benchmarks import livetail
from ironstar.benchmarks.sse import _cpu_s
from ironstar.natsserver import NatsServer, free_port
from projector.decoding import decode
from projector.feed import Delivery, Feed, catchup_size
from projector.readmodel import ReadModel
from projector.replica import apply

T = TypeVar("T")


def _say(what: str) -> None:
    print(f"bench project: {what}", file=sys.stderr, flush=True)


def add(parser: argparse.ArgumentParser) -> None:
    """The options of `ironstar bench project` (counts of events, batch sizes, the live
    tail's rate in events per second and its length in seconds)."""
    parser.add_argument("--events", type=int, default=1_000_000, help="events to store")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="events per DuckDB transaction (default 1000)"
    )
    parser.add_argument(
        "--catchup-batch-size",
        type=int,
        default=ProjectorSettings().catchup_batch_size,
        help="events per transaction while more than --batch-size wait (the projector's default)",
    )
    parser.add_argument(
        "--catchup-batch-max",
        type=int,
        default=ProjectorSettings().catchup_batch_max,
        help="catch-up batches grow with the aggregates up to this (the projector's default)",
    )
    parser.add_argument("--tail-rate", type=int, default=1000, help="live events/s after catch-up")
    parser.add_argument(
        "--tail-seconds", type=float, default=5.0, help="how long to run the live tail (0: skip)"
    )


async def load(nc: Client, prefix: str, envelopes: list[Envelope], window: int = 20_000) -> float:
    """Publish every envelope with publish_async in windows; returns seconds taken."""
    subjects = Subjects(prefix)
    js = nc.jetstream(publish_async_max_pending=window)
    started = time.perf_counter()
    for offset in range(0, len(envelopes), window):
        acks = [
            await js.publish_async(
                subjects.events(e.aggregate_type, e.aggregate_id), codec.encode(e)
            )
            for e in envelopes[offset : offset + window]
        ]
        await asyncio.gather(*acks)
    return time.perf_counter() - started


async def _nats_only(nc: Client, settings: NatsSettings, count: int, size: int) -> float:
    subject = Subjects(settings.prefix).all_events
    feed = Feed(nc, settings.stream, "bench-nats-only", subject, 0, size)
    await feed.start()
    started, never = time.perf_counter(), asyncio.Event()
    seen = 0
    while seen < count:
        batch = await feed.next(never)
        assert batch is not None
        seen = batch.last
        await feed.ack(batch)
    elapsed = time.perf_counter() - started
    await feed.close(delete=True)
    return elapsed


def _duckdb_only(
    path: Path, bodies: list[livetail.Body], floor: int, cap: int
) -> tuple[float, ReadModel]:
    """Seconds to decode and apply `bodies` in catch-up batches as the projector's (from
    `floor` events, growing with the aggregates up to `cap`: `feed.catchup_size`), the
    next batch cut and decoded on a thread of its own while one is applied; and the model,
    still open (for `livetail.alone`)."""
    model = ReadModel(path)
    started, taken = time.perf_counter(), 0

    def cut() -> list[Delivery]:
        nonlocal taken
        chunk = bodies[taken : taken + catchup_size(model.versions.aggregates, floor, cap)]
        batch = [(taken + i + 1, subject, body) for i, (subject, body) in enumerate(chunk)]
        taken += len(chunk)
        return batch

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder:
        deliveries = cut()
        ahead = decoder.submit(decode, deliveries)
        while deliveries:
            decoded, following = ahead.result(), cut()
            ahead = decoder.submit(decode, following)
            apply(model, deliveries, deliveries[-1][0], halt=True, decoded=decoded)
            deliveries = following
    return time.perf_counter() - started, model


async def _end_to_end(
    nc: Client,
    settings: NatsSettings,
    server: NatsServer,
    directory: Path,
    count: int,
    args: argparse.Namespace,
    catchup: int,
    tail: list[Envelope],
) -> tuple[float, float, float, dict[str, Any], float]:
    """Seconds of the catch-up of a projector process (`ironstar projector`, as `ironstar up`
    runs it, so the tail's publishers and queries in this process take none of its GIL),
    the CPU seconds of that process with its children and of nats-server meanwhile, the
    live tail's figures (`livetail.measure`), and the seconds of a rebuild of every
    projection after it."""
    data_dir = directory / "projector"
    env = {
        **os.environ,
        "IRONSTAR_NATS_URL": settings.url,
        "IRONSTAR_PROJECTOR_NAME": "bench",
        "IRONSTAR_PROJECTOR_DATA_DIR": str(data_dir),
        "IRONSTAR_PROJECTOR_BATCH_SIZE": str(args.batch_size),
        "IRONSTAR_PROJECTOR_CATCHUP_BATCH_SIZE": str(catchup),
        "IRONSTAR_PROJECTOR_CATCHUP_BATCH_MAX": str(args.catchup_batch_max),
        "IRONSTAR_PROJECTOR_METRICS_PORT": "-1",
    }
    launch = processes.spawn("projector", env, directory / "projector.log", directory / "ready")
    try:
        await asyncio.to_thread(processes.wait_ready, [launch], 120)
        assert server.process is not None
        pid, server_pid = launch.process.pid, server.process.pid
        started, cpu, server_cpu = time.perf_counter(), _tree_cpu_s(pid), _cpu_s(server_pid)
        request = QueryRequest(name="totals", min_seq=count, timeout_s=3600)
        reply = await bus.request(
            nc,
            Subjects(settings.prefix).query(builtin.NAME),
            msgspec.json.encode(request),
            3600,
            "projector",
        )
        elapsed = time.perf_counter() - started
        cpu, server_cpu = _tree_cpu_s(pid) - cpu, _cpu_s(server_pid) - server_cpu
        assert msgspec.json.decode(reply)["result"]["events"] == count
        log = directory / "projector.log"
        figures = {}
        if tail:  # read the log before the rebuild applies more past `count`
            figures = await livetail.measure(nc, settings, tail, args.tail_rate, log, count)
        rebuilt = await _rebuild(nc, settings)
    finally:
        await asyncio.to_thread(processes.stop_all, [launch.process])
    return elapsed, cpu, server_cpu, figures, rebuilt


async def _rebuild(nc: Client, settings: NatsSettings) -> float:
    """Seconds of a blue/green rebuild of every projection of the projector "bench" (what
    a user runs after a projection's version changed), from its start until it is done."""
    subject = Subjects(settings.prefix).query("rebuild.bench")

    async def ask(name: str) -> dict[str, Any]:
        body = msgspec.json.encode(QueryRequest(name=name, params={"projections": []}))
        result: dict[str, Any] = msgspec.json.decode(
            await bus.request(nc, subject, body, 30, "projector")
        )["result"]
        return result

    started = time.perf_counter()
    status = await ask("start")
    while status["state"] not in ("done", "failed"):
        await asyncio.sleep(0.2)  # polling the rebuild's status, as `ironstar rebuild` does
        status = await ask("status")
    assert status["state"] == "done", status
    return time.perf_counter() - started


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, its children that ended (reaped) and those
    running now (its feed process while catching up)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    running = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                running += _cpu_s(int(child))
    return _cpu_s(pid) + reaped + running


async def _cpu(work: Awaitable[T]) -> tuple[T, float]:
    """What `work` returns (its seconds, ...), and the process CPU seconds it took."""
    cpu = time.process_time()
    seconds = await work
    return seconds, time.process_time() - cpu


def _history(stored: int, live: int) -> tuple[list[Envelope], list[Envelope]]:
    """`stored` envelopes of the app's history to load, and the `live` ones after them."""
    app = catalogue.current().app
    if app.events is None:
        raise catalogue.AppError(f"app {app.name} declares no history (App(events=...))")
    envelopes = list(app.events(stored + live, 1))
    return envelopes[:stored], envelopes[stored:]


async def _duckdb_phases(
    path: Path, envelopes: list[Envelope], tail: list[Envelope], catchup: int, cap: int
) -> tuple[float, float, dict[str, float | None]]:
    """The DuckDB-only ceiling's seconds and CPU seconds over `envelopes` (a new file at
    `path`), then the live tail's floor on that file (`livetail.alone`: the first
    `FLOOR_BATCHES` of `tail`, each applied alone)."""
    _say("ceiling: applying to DuckDB, no NATS")
    work = asyncio.to_thread(_duckdb_only, path, livetail.bodies(envelopes), catchup, cap)
    (seconds, model), cpu = await _cpu(work)
    _say("the live tail's floor: one event per batch, alone, on that file")
    live = livetail.bodies(tail[: livetail.FLOOR_BATCHES])
    return seconds, cpu, await asyncio.to_thread(livetail.alone, model, live)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the history, measure both ceilings, the end-to-end catch-up and the live
    tail (module docstring); returns the figures by name (rates in events per second,
    times in seconds or `_ms` milliseconds). Raises `AppError` when the app declares no
    history."""
    configure_logging("bench", "WARNING")  # JSON lines on stderr; figures on stdout
    load_at_start = round(os.getloadavg()[0], 1)
    envelopes, tail = _history(args.events, int(args.tail_rate * args.tail_seconds))
    count = len(envelopes)
    with tempfile.TemporaryDirectory(prefix="ironstar-bench-project-") as tmp:
        directory = Path(tmp)
        server = NatsServer(directory / "nats", free_port(), sync_always=False).start()
        settings = NatsSettings(url=server.url)
        nc = await bus.connect(settings, name="bench-project")
        try:
            await bus.ensure_stream(nc, settings)
            _say(f"loading {count:,} events")
            loaded = await load(nc, settings.prefix, envelopes)
            _say("ceiling: consuming with nats-py, applying nothing")
            nats_s, nats_cpu = await _cpu(_nats_only(nc, settings, count, args.batch_size))
            catchup = max(args.batch_size, args.catchup_batch_size)
            duck_s, duck_cpu, floor = await _duckdb_phases(
                directory / "ceiling.duckdb", envelopes, tail, catchup, args.catchup_batch_max
            )
            _say("end to end: a projector from an empty file, the live tail, a rebuild")
            e2e_s, e2e_cpu, server_cpu, tailed, rebuild_s = await _end_to_end(
                nc, settings, server, directory, count, args, catchup, tail
            )
        finally:
            await nc.drain()
            server.stop()
    return {
        "events": count,
        "load_events_per_s": round(count / loaded),
        "end_to_end_events_per_s": round(count / e2e_s),
        "ceiling_nats_only_events_per_s": round(count / nats_s),
        "ceiling_duckdb_only_events_per_s": round(count / duck_s),
        "end_to_end_s": round(e2e_s, 2),
        "rebuild_events_per_s": round(count / rebuild_s),
        # events per CPU second (steadier than wall time on a shared machine): of the projector
        # process and its children end to end, of this process for the ceilings
        "end_to_end_cpu_events_per_s": round(count / e2e_cpu),
        "end_to_end_nats_server_cpu_us_per_event": round(1e6 * server_cpu / count, 1),
        "nats_only_cpu_events_per_s": round(count / nats_cpu),
        "duckdb_only_cpu_events_per_s": round(count / duck_cpu),
        "batch_size": args.batch_size,
        "catchup_batch_size": catchup,
        "catchup_batch_max": args.catchup_batch_max,
        **tailed,  # livetail.measure
        **floor,  # livetail.alone
        "goal_tail_p99_ms": 20,
        "load_average_1m_start": load_at_start,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "goal_events_per_s": 50_000,
    }
