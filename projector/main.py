"""The projector's composition root: apply the stream into DuckDB, answer queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from common import bus
from common import envelope as codec
from common.envelope import Envelope
from common.errors import Invalid, NotFound, invalid_from_msgspec
from common.messages import QueryRequest
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import Subjects
from common.telemetry import serve_metrics
from projector import metrics, sql
from projector.feed import Batch, batches
from projector.progress import Progress
from projector.readmodel import ReadModel

log = structlog.get_logger()
_queries = msgspec.json.Decoder(QueryRequest)
_json = msgspec.json.Encoder()
LOGGED_IDS = 100  # correlation ids per batch_applied log line at most


class Poison(Exception):
    """The projection is set to halt on an event it cannot decode or apply."""


async def serve(
    nats_settings: NatsSettings,
    settings: ProjectorSettings,
    ready: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    model = ReadModel(Path(settings.data_dir) / f"{settings.name}.duckdb")
    progress = Progress(model.checkpoint)
    nc = await bus.connect(nats_settings, name=f"ironstar-projector-{settings.name}")
    subjects = Subjects(nats_settings.prefix)
    try:
        await bus.ensure_stream(nc, nats_settings)
        await _serve_queries(nc, subjects, model, progress, settings)
        port = serve_metrics(settings.metrics_host, settings.metrics_port)
        ready(
            f"projector {settings.name} at sequence {model.checkpoint}, file {model.path}"
            + (f", metrics :{port}" if port else "")
        )
        feed = batches(
            nc,
            nats_settings.stream,
            f"projector-{settings.name}",
            subjects.all_events,
            model.checkpoint,
            settings.batch_size,
            settings.batch_ms / 1000,
            stop,
        )
        async for batch in feed:
            await _apply(model, batch, settings.on_poison)
            await batch.ack()
            await progress.advance(model.checkpoint)
            metrics.LAG.labels("all").set(batch.pending)
    finally:
        await nc.drain()
        model.close()


async def _apply(model: ReadModel, batch: Batch, on_poison: str) -> None:
    started = time.perf_counter()
    events: list[tuple[int, Envelope]] = []
    dead: list[tuple[int, str, str, bytes]] = []
    for delivery in batch.deliveries:
        try:
            events.append((delivery.sequence, codec.decode(delivery.data)))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if on_poison == "halt":
                raise Poison(f"cannot decode sequence {delivery.sequence}: {exc}") from exc
            log.error("dead_letter", sequence=delivery.sequence, error=str(exc))
            dead.append((delivery.sequence, delivery.subject, str(exc), delivery.data))
    last = batch.deliveries[-1].sequence
    await asyncio.to_thread(model.apply, events, last, dead)
    log.info(
        "batch_applied",
        first=batch.deliveries[0].sequence,
        last=last,
        events=len(batch.deliveries),
        correlation_ids=sorted({e.metadata.correlation_id for _, e in events})[:LOGGED_IDS],
    )
    metrics.DEAD_LETTERS.inc(len(dead))
    metrics.EVENTS_PROCESSED.inc(len(batch.deliveries))
    metrics.BATCH_SIZES.observe(len(batch.deliveries))
    metrics.BATCH_DURATION.observe(time.perf_counter() - started)


async def _serve_queries(
    nc: Client,
    subjects: Subjects,
    model: ReadModel,
    progress: Progress,
    settings: ProjectorSettings,
) -> None:
    def answer_with(run: Callable[[QueryRequest], Any]) -> bus.Handler:
        async def answer(msg: Msg) -> bytes:
            try:
                request = _queries.decode(msg.data)
            except msgspec.ValidationError as exc:
                raise invalid_from_msgspec(exc, "query request") from None
            started = time.perf_counter()
            sequence = await progress.reach(request.min_seq, request.timeout_s)
            result = await asyncio.to_thread(run, request)
            metrics.QUERY_DURATION.observe(time.perf_counter() - started)
            return _json.encode({"sequence": sequence, "result": result})

        return answer

    def named(projection: str) -> Callable[[QueryRequest], Any]:
        def run(request: QueryRequest) -> Any:
            if request.name not in model.projections[projection].queries:
                known = ", ".join(sorted(model.projections[projection].queries))
                raise NotFound(f"{projection} has no query {request.name!r}; known: {known}")
            return model.query(projection, request.name, request.params)

        return run

    def adhoc(request: QueryRequest) -> Any:
        text = request.params.get("sql")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("give the SQL text as a non-empty string", field="sql")
        return sql.run(model.con, text, settings.sql_timeout_s, settings.sql_max_rows)

    for projection in model.projections:
        await bus.serve(
            nc,
            subjects.query(projection),
            f"projection.{projection}",
            answer_with(named(projection)),
            concurrency=64,
        )
    await bus.serve(nc, subjects.query("sql"), "projection.sql", answer_with(adhoc), 8)
