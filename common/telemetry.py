"""Logging and metrics plumbing: structlog JSON lines, the correlation id, /metrics.

The correlation id lives in a context variable, so every log line of a request carries it;
it travels between services in the `Ironstar-Correlation-Id` NATS header and in each event's
metadata. Metric objects themselves are defined in each service's `metrics` module.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

import structlog
from prometheus_client import Counter, start_http_server

from common.envelope import uuid7

_correlation: ContextVar[str | None] = ContextVar("correlation_id", default=None)


LOG_LINES_DROPPED = Counter(
    "log_lines_dropped_total", "log lines that could not be written (e.g. the disk is full)"
)


class _Lossy:
    """stderr that drops a line it cannot write (ENOSPC, EPIPE) instead of raising into the
    code that logged it: a full disk must not crash a service through its log."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError:
            LOG_LINES_DROPPED.inc()
            return 0

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            LOG_LINES_DROPPED.inc()


def configure_logging(service: str, level: str = "INFO") -> None:
    """One JSON object per line on stderr, with the service name and correlation id."""
    out = _Lossy(sys.stderr)

    def add_context(
        _logger: object, _name: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("service", service)
        cid = _correlation.get()
        if cid is not None:
            event.setdefault("correlation_id", cid)
        return event

    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_context,
    ]
    # Libraries (uvicorn, litestar, nats) log through the standard library: same JSON lines.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # a library's traceback, as text
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=getattr(logging, level), force=True)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def bind_correlation(value: str | None) -> str:
    """Set the current correlation id (a new one if none is given) and return it."""
    cid = value or uuid7()
    _correlation.set(cid)
    return cid


def correlation_id() -> str:
    """The current correlation id (context-local), a new UUIDv7 bound when there is none."""
    cid = _correlation.get()
    return cid if cid is not None else bind_correlation(None)


def serve_metrics(host: str, port: int) -> int | None:
    """Expose the default registry over HTTP; port 0 picks a free one, -1 disables."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
