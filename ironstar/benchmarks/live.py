"""`ironstar bench live`: many subscribers of a few live queries, beside polling them.

Starts its own nats-server (fsync always), a projector and a gateway as processes; opens
`subscribers` SSE feeds of `GET /api/live` spread over `queries` distinct dashboard
queries (`stream.events_per_minute` and `analytics.throughput` over different `minutes`),
and appends valid events (the app's generated histories) straight into the stream at
`rate`/s for `duration` s. Then, in the same run, the polling baseline: as many clients
each re-query the same queries over `GET /api/read/...` every `interval_ms`, while the next
events arrive at the same rate.

The SSE readers run in a process of their own (`_read_feeds`): in the appender's process
their reads delayed both the announcements the bench heard (commit times, p99 258 ms late)
and their own arrival times. Both processes stamp with `time.perf_counter()`
(CLOCK_MONOTONIC, one clock for the machine).

Figures: batches/s (the projector's announcements on `<prefix>.applied`), evaluations/s
(the gateway's `live_evaluations_total`) beside distinct queries x min(batches/s,
1000 / interval_ms), the projector requests carrying them/s (`live_rounds_total`; one
per evaluation for a gateway without rounds), answers delivered/s; commit→result
p50/p99: per answer, its arrival minus the commit of the batch it is as of (the newest
one when its evaluation ran: a throttled subscription is measured from the batch it
shows, so waiting for the interval is not counted for batches it skipped); and
every-batch→visible p50/p99: per client and committed batch, to the first answer that
holds it (which includes the wait for the interval). For polling, every-batch→visible
is the comparable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import re
import resource
import selectors
import socket
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from common import bus, catalogue
from common import envelope as codec
from common.envelope import Envelope
from common.settings import NatsSettings
from common.subjects import Subjects
from ironstar.benchmarks.sse import _ID, _start_server
from ironstar.natsserver import NatsServer, free_port

_SEQUENCE = re.compile(rb'"sequence":(\d+)')
_EVALUATIONS = re.compile(r"^live_evaluations_total\{[^}]*\} (\S+)$", re.M)
_ROUNDS = re.compile(r"^live_rounds_total (\S+)$", re.M)


def add(parser: argparse.ArgumentParser) -> None:
    """The options of `ironstar bench live` (see the module's doc)."""
    parser.add_argument("--subscribers", type=int, default=1000, help="live feeds (and pollers)")
    parser.add_argument("--queries", type=int, default=10, help="distinct queries")
    parser.add_argument("--rate", type=int, default=1000, help="events appended per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of appends each")
    parser.add_argument("--interval-ms", type=int, default=250, help="min_interval_ms / poll")
    parser.add_argument("--no-baseline", action="store_true", help="skip the polling baseline")


def _queries(count: int) -> list[tuple[str, str, int]]:
    """`count` distinct dashboard queries: (projection, query, minutes)."""
    kinds = [("stream", "events_per_minute"), ("analytics", "throughput")]
    return [(*kinds[i % 2], 5 + i // 2) for i in range(count)]


async def _append(nc: Any, prefix: str, events: list[Envelope], rate: float) -> None:
    subjects = Subjects(prefix)
    js = nc.jetstream(publish_async_max_pending=100_000)
    pending, start, n = [], time.perf_counter(), 0
    while n < len(events):
        due = min(len(events), int((time.perf_counter() - start) * rate))
        for e in events[n:due]:
            subject = subjects.events(e.aggregate_type, e.aggregate_id)
            pending.append(await js.publish_async(subject, codec.encode(e)))
        n = max(n, due)
        await asyncio.sleep(0.005)
    await asyncio.gather(*pending)


def _visible(
    records: list[list[tuple[int, float]]], commits: dict[int, float], start: float, end: float
) -> list[float]:
    """Per client and commit in [start, end]: commit → the first answer holding it."""
    window = sorted((s, t) for s, t in commits.items() if start <= t <= end)
    out = []
    for record in records:
        record = sorted(record, key=lambda r: r[1])
        best, top = [], 0
        for sequence, _ in record:  # the newest sequence held by each arrival
            top = max(top, sequence)
            best.append(top)
        for sequence, committed in window:
            i = bisect.bisect_left(best, sequence)
            if i < len(record):
                out.append(record[i][1] - committed)
    return out


def _latencies(
    records: list[list[tuple[int, float]]], commits: dict[int, float], start: float, end: float
) -> dict[str, float]:
    """commit→result (per answer, from the commit of the batch it is as of) and
    every-batch→visible (per client and batch, to the first answer holding it), p50/p99 ms."""
    ages = [t - commits[s] for r in records for s, t in r if s in commits and start <= t]
    age50, age99 = _quantiles(ages)
    p50, p99 = _quantiles(_visible(records, commits, start, end))
    return {
        "commit_to_result_p50_ms": age50,
        "commit_to_result_p99_ms": age99,
        "every_batch_to_visible_p50_ms": p50,
        "every_batch_to_visible_p99_ms": p99,
    }


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] * 1000, values[0] * 1000) if values else (0.0, 0.0)
    q = statistics.quantiles(values, n=100)
    return q[49] * 1000, q[98] * 1000


async def _evaluations(http: httpx.AsyncClient) -> tuple[float, float]:
    """(live evaluations, projector requests carrying them: rounds) so far; a gateway
    without rounds (one request per evaluation) counts each evaluation as one."""
    text = (await http.get("/metrics")).text
    evaluations = sum(map(float, _EVALUATIONS.findall(text)))
    rounds = _ROUNDS.findall(text)
    return evaluations, sum(map(float, rounds)) if rounds else evaluations


def _read_feeds(port: int, paths: list[str], conn: Connection) -> None:
    """A process of its own: one raw SSE reader per path; sends "open" once every feed is
    open, records (sequence, arrival) until the parent sends anything, then sends the
    records (or ("error", why)). One `selectors` loop over plain sockets, not asyncio
    streams: its cost per answer read is one `recv` and a regex, so the bench's own
    share of commit→result stays small (asyncio's reader, 1,000 streams in one event loop,
    read answers up to ~100 ms after the gateway's send returned, p99 at load 8)."""
    try:
        records = _reading(port, paths, conn)
    except Exception as exc:  # the parent reports it
        conn.send(("error", repr(exc)))
        return
    conn.send(records)


def _reading(port: int, paths: list[str], conn: Connection) -> list[list[tuple[int, float]]]:
    records: list[list[tuple[int, float]]] = [[] for _ in paths]
    heads: list[bytes | None] = [b""] * len(paths)
    rests = [b""] * len(paths)
    waiting = len(paths)  # feeds whose response head has not come yet
    with selectors.DefaultSelector() as selector:
        for i, path in enumerate(paths):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, i)
        selector.register(conn, selectors.EVENT_READ, -1)
        try:
            while True:
                for ready, _ in selector.select():
                    i = ready.data
                    if i < 0:
                        return records  # the parent said stop
                    data = ready.fileobj.recv(262144)  # type: ignore[union-attr]
                    now = time.perf_counter()
                    if not data:
                        raise RuntimeError(f"feed {paths[i]} ended")
                    if heads[i] is not None:  # before the head: the status line first
                        head, found, data = (heads[i] + data).partition(b"\r\n\r\n")
                        if not found:
                            heads[i] = head
                            continue
                        if b" 200 " not in head.split(b"\r\n", 1)[0]:
                            raise RuntimeError(f"feed refused: {head[:200]!r}")
                        heads[i], waiting = None, waiting - 1
                        if not waiting:
                            conn.send("open")
                    data = rests[i] + data
                    cut = data.rfind(b"\n") + 1
                    rests[i] = data[cut:]
                    records[i].extend((int(m), now) for m in _ID.findall(data, 0, cut))
        finally:
            for key in list(selector.get_map().values()):
                if key.data >= 0:
                    key.fileobj.close()  # type: ignore[union-attr]


async def _live(
    port: int, args: argparse.Namespace, nc: Any, prefix: str, events: list[Envelope],
    commits: dict[int, float],
) -> dict[str, float]:  # fmt: skip
    queries = _queries(args.queries)
    paths = [
        f"/api/live?query={p}.{n}&minutes={m}&min_interval_ms={args.interval_ms}"
        for p, n, m in (queries[i % len(queries)] for i in range(args.subscribers))
    ]
    spawn = multiprocessing.get_context("spawn")
    mine, theirs = spawn.Pipe()
    reader = spawn.Process(target=_read_feeds, args=(port, paths, theirs), daemon=True)
    reader.start()
    try:
        opened = await asyncio.to_thread(mine.recv)
        if opened != "open":
            raise RuntimeError(f"the feeds did not open: {opened}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            before, started = await _evaluations(http), time.perf_counter()
            await _append(nc, prefix, events, args.rate)
            ended = time.perf_counter()
            after = await _evaluations(http)
        await asyncio.sleep(1.0)  # the answers of the last batches arrive
        mine.send("stop")
        records: list[list[tuple[int, float]]] = await asyncio.to_thread(mine.recv)
        if not isinstance(records, list):
            raise RuntimeError(f"the feeds failed: {records}")
    finally:
        reader.join(10)
        if reader.is_alive():
            reader.terminate()
    elapsed = ended - started
    batches = sum(started <= t <= ended for t in commits.values()) / elapsed
    return {
        "appended_per_s": len(events) / elapsed,
        "batches_per_s": batches,
        "evaluations_per_s": (after[0] - before[0]) / elapsed,
        "projector_requests_per_s": (after[1] - before[1]) / elapsed,
        "expected_evaluations_per_s": len(queries) * min(batches, 1000 / args.interval_ms),
        "answers_per_s": sum(started <= t <= ended for r in records for _, t in r) / elapsed,
        **_latencies(records, commits, started, ended),
    }


async def _polling(
    port: int, args: argparse.Namespace, nc: Any, prefix: str, events: list[Envelope],
    commits: dict[int, float],
) -> dict[str, float]:  # fmt: skip
    queries = _queries(args.queries)
    records: list[list[tuple[int, float]]] = [[] for _ in range(args.subscribers)]
    done = asyncio.Event()
    errors = 0
    limits = httpx.Limits(max_connections=args.subscribers, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits
    ) as http:

        async def poll(i: int) -> None:
            nonlocal errors
            projection, name, minutes = queries[i % len(queries)]
            path, every = f"/api/read/{projection}/{name}", args.interval_ms / 1000
            while not done.is_set():
                asked = time.perf_counter()
                try:
                    reply = await http.get(path, params={"minutes": minutes})
                except httpx.HTTPError:
                    errors += 1
                    continue
                found = _SEQUENCE.search(reply.content)
                if found:
                    records[i].append((int(found.group(1)), time.perf_counter()))
                else:
                    errors += 1
                await asyncio.sleep(max(0.0, asked + every - time.perf_counter()))  # the period

        pollers = [asyncio.create_task(poll(i)) for i in range(args.subscribers)]
        started = time.perf_counter()
        await _append(nc, prefix, events, args.rate)
        ended = time.perf_counter()
        await asyncio.sleep(1.0)
        done.set()
        await asyncio.gather(*pollers, return_exceptions=True)
    elapsed = ended - started
    return {
        "queries_per_s": sum(started <= t <= ended for r in records for _, t in r) / elapsed,
        "failed_queries": errors,
        **_latencies(records, commits, started, ended),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the bench with the options of `add`; the figures by name (ms, per second, counts).
    Raises SystemExit if the app generates no events, RuntimeError if a process or the
    feeds do not start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = catalogue.current().app
    if app.events is None:
        raise SystemExit("this app generates no events (App.events) to load")
    per_run = int(args.rate * args.duration)
    events = list(app.events(2 * per_run, 1))
    figures: dict[str, Any] = {"subscribers": args.subscribers, "distinct_queries": args.queries}
    with tempfile.TemporaryDirectory(prefix="ironstar-bench-live-") as tmp:
        workdir = Path(tmp)
        server = NatsServer(workdir / "nats", free_port()).start(log=workdir / "nats.log")
        processes = []
        try:
            nats = NatsSettings(url=server.url, prefix="bench", stream="BENCH_LIVE")
            nc = await bus.connect(nats, name="bench-live")
            await bus.ensure_stream(nc, nats)
            commits: dict[int, float] = {}

            async def heard(msg: Any) -> None:
                found = _SEQUENCE.search(msg.data)
                if found:
                    commits.setdefault(int(found.group(1)), time.perf_counter())

            await nc.subscribe(Subjects(nats.prefix).applied, cb=heard)
            extra = {"IRONSTAR_PROJECTOR_DATA_DIR": str(workdir / "projector"),
                     "IRONSTAR_LIMIT_REQUESTS_PER_S": "0",
                     "IRONSTAR_GATEWAY_LIVE_MAX_SUBSCRIPTIONS": "100000",
                     "IRONSTAR_GATEWAY_LIVE_MAX_PER_PRINCIPAL": "100000"}  # fmt: skip
            processes.append(_start_server("projector", nats, free_port(), workdir, extra))
            port = free_port()
            processes.append(_start_server("gateway", nats, port, workdir, extra))
            live = await _live(port, args, nc, nats.prefix, events[:per_run], commits)
            figures.update({f"live_{k}": v for k, v in live.items()})
            if not args.no_baseline:
                polled = await _polling(port, args, nc, nats.prefix, events[per_run:], commits)
                figures.update({f"polling_{k}": v for k, v in polled.items()})
            await nc.drain()
        finally:
            for process in processes:
                process.terminate()
                process.wait(15)
            server.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return figures
