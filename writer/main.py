"""The writer's composition root: connect, ensure the stream, answer command requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import structlog
from nats.aio.msg import Msg

from common import bus, catalogue
from common.errors import BadRequest, IronstarError, invalid_from_msgspec
from common.messages import CommandRequest
from common.settings import NatsSettings, WriterSettings
from common.subjects import Subjects
from common.telemetry import serve_metrics
from writer import metrics
from writer.handler import CommandHandler
from writer.store import JetStreamEventStore

log = structlog.get_logger()
_requests = msgspec.json.Decoder(CommandRequest)
_results = msgspec.json.Encoder()


async def serve(
    nats_settings: NatsSettings,
    settings: WriterSettings,
    ready: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    nc = await bus.connect(nats_settings, name="ironstar-writer")
    try:
        await bus.ensure_stream(nc, nats_settings)
        subjects = Subjects(nats_settings.prefix)
        store = JetStreamEventStore(
            nc,
            nats_settings.stream,
            subjects,
            nats_settings.request_timeout_s,
            on_retry=metrics.RETRIES.inc,
        )
        handler = CommandHandler(
            store,
            settings.max_retries,
            settings.cache_size,
            metrics.CONFLICTS.inc,
            settings.max_events_per_command,
        )
        for aggregate_type in catalogue.current().aggregates:
            await bus.serve(
                nc,
                subjects.command(aggregate_type),
                "writers",
                _answer(handler, aggregate_type),
                settings.concurrency,
            )
        port = serve_metrics(settings.metrics_host, settings.metrics_port)
        ready(f"writer serving {subjects.command('*')}" + (f", metrics :{port}" if port else ""))
        await stop.wait()
    finally:
        await bus.goodbye(nc)


def _answer(handler: CommandHandler, aggregate_type: str) -> bus.Handler:
    async def answer(msg: Msg) -> bytes:
        started = time.perf_counter()
        try:
            request = _requests.decode(msg.data)
        except msgspec.ValidationError as exc:
            raise invalid_from_msgspec(exc, "command request") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"a command request must be a JSON CommandRequest: {exc}") from None
        ids = {"command_id": request.command_id, "correlation_id": request.correlation_id}
        try:
            result = await handler.handle(aggregate_type, request)
        except IronstarError as exc:
            metrics.COMMANDS.labels(_label(request.type), exc.code).inc()
            log.info(
                "command_refused", type=request.type[:80], code=exc.code, reason=exc.message, **ids
            )
            raise
        outcome = "duplicate" if result.duplicate else "ok" if result.events else "no_op"
        metrics.COMMANDS.labels(request.type, outcome).inc()
        if result.events and not result.duplicate:
            metrics.EVENTS_APPENDED.labels(aggregate_type).inc(len(result.events))
            metrics.APPEND_DURATION.observe(time.perf_counter() - started)
        log.info("command_applied", type=request.type, sequence=result.sequence, **ids)
        return _results.encode(result)

    return answer


def _label(command_type: str) -> str:
    """A metric label from a client's string: known command types only, so no label explosion."""
    return command_type if command_type in catalogue.current().command_types else "unknown"
