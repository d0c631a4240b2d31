"""`ironstar bench project`'s live tail: the latency of events published one by one after
the catch-up, beside what the projector's log says of the batches that applied them and
beside the tail's floor (one event per batch, alone: `alone`).

Figures (`_ms` in milliseconds): `tail_timed_events` (one in `SAMPLE` of those published),
`tail_p50_ms` / `tail_p99_ms` (from an event's ack until a query with its `min_seq`
answers: applied and readable), `tail_batches`, `tail_batch_events_p50`,
`tail_batch_apply_p50_ms` / `_p99_ms` (`batch_applied`'s `ms`: decoding to commit),
`tail_applying_share` (the share of the tail's time the projector spent applying; 1.0: it
never paused, the rate at its ceiling), `tail_floor_p50_ms` / `_p99_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from common import builtin, bus
from common import envelope as codec
from common.envelope import Envelope
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from projector.readmodel import ReadModel
from projector.replica import apply

SAMPLE = 10  # one live event in 10 is timed
FLOOR_BATCHES = 200  # one-event batches timed for the live tail's floor
Body = tuple[str, bytes]  # subject, encoded envelope


def bodies(envelopes: list[Envelope]) -> list[Body]:
    """Each envelope's stream subject and encoded body."""
    return [(Subjects().events(e.aggregate_type, e.aggregate_id), codec.encode(e))
            for e in envelopes]  # fmt: skip


def alone(model: ReadModel, live: list[Body]) -> dict[str, float | None]:
    """The live tail's floor: each of `live` applied alone, one batch each, after the
    model's checkpoint, p50/p99 milliseconds; closes the model."""
    seconds = []
    try:
        for sequence, (subject, body) in enumerate(live, start=model.checkpoint + 1):
            started = time.perf_counter()
            apply(model, [(sequence, subject, body)], sequence, halt=True)
            seconds.append(time.perf_counter() - started)
    finally:
        model.close()
    return {"tail_floor_p50_ms": ms(seconds, 0.5), "tail_floor_p99_ms": ms(seconds, 0.99)}


async def measure(
    nc: Client,
    settings: NatsSettings,
    envelopes: list[Envelope],
    rate: int,
    log: Path,
    stored: int,
) -> dict[str, Any]:
    """Publish `envelopes` at `rate` per second (open loop) after `stored` events, time
    one in `SAMPLE`, then read the projector's `log` (JSON lines): the module's figures."""
    latencies = await _tail(nc, settings, envelopes, rate)
    return {
        "tail_timed_events": len(latencies),
        "tail_rate_per_s": rate,
        "tail_p50_ms": ms(latencies, 0.5),
        "tail_p99_ms": ms(latencies, 0.99),
        **_batches(log, stored, len(envelopes) / rate),
    }


async def _tail(
    nc: Client, settings: NatsSettings, envelopes: list[Envelope], rate: int
) -> list[float]:
    """Seconds from the ack of every `SAMPLE`th event until a query with its min_seq
    answered (not every event: the queries would load the process that also applies)."""
    js, subjects = nc.jetstream(), Subjects(settings.prefix)
    started, latencies = time.perf_counter(), []

    async def one(envelope: Envelope, timed: bool) -> None:
        subject = subjects.events(envelope.aggregate_type, envelope.aggregate_id)
        ack = await js.publish(subject, codec.encode(envelope))
        if not timed:
            return
        acked = time.perf_counter()
        request = QueryRequest(name="totals", min_seq=ack.seq, timeout_s=30)
        body = msgspec.json.encode(request)
        await bus.request(nc, subjects.query(builtin.NAME), body, 30, "projector")
        latencies.append(time.perf_counter() - acked)

    tasks = []
    for i, envelope in enumerate(envelopes):  # open loop: on schedule, whatever came back
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(envelope, i % SAMPLE == 0)))
    await asyncio.gather(*tasks)
    return latencies


def _batches(log: Path, stored: int, seconds: float) -> dict[str, float | None]:
    """What the projector's log (`batch_applied` lines) says of the batches after the
    `stored` history, over a tail of `seconds` (read before anything else applies more)."""
    batches = []
    for line in log.read_text(errors="replace").splitlines():
        if '"batch_applied"' in line:
            with contextlib.suppress(msgspec.DecodeError):
                entry = msgspec.json.decode(line)
                if entry.get("first", 0) > stored:
                    batches.append(entry)
    sizes = sorted(entry["events"] for entry in batches)
    applying = [entry["ms"] / 1000 for entry in batches]
    return {
        "tail_batches": len(batches),
        "tail_batch_events_p50": sizes[len(sizes) // 2] if sizes else None,
        "tail_batch_apply_p50_ms": ms(applying, 0.5),
        "tail_batch_apply_p99_ms": ms(applying, 0.99),
        "tail_applying_share": round(sum(applying) / seconds, 2) if seconds else None,
    }


def ms(seconds: list[float], quantile: float) -> float | None:
    """The `quantile` of `seconds` in milliseconds (one decimal); None when empty."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 1)
