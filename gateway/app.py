"""The gateway's app factory: Litestar with NATS opened in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from nats.errors import Error as NatsError
from prometheus_client import generate_latest

from common import bus
from common import catalogue as catalogues
from common.settings import AuthSettings, GatewaySettings, LimitSettings, NatsSettings
from gateway.api import reads
from gateway.api.commands import CommandController, SqlController
from gateway.api.errors import HANDLERS
from gateway.backend import Backend
from gateway.dashboard import page as dashboard
from gateway.feed import consumers
from gateway.feed.process import FeedProcess
from gateway.feed.sse import EventsController
from gateway.live.follow import LiveController
from gateway.live.hub import Hub
from gateway.security.frontdoor import Security
from gateway.storage import StorageWatch


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up; `service` tells `ironstar up` that a busy port is Ironstar's."""
    return {"status": "ok", "service": "ironstar-gateway"}


@get("/readyz", tags=["health"])
async def readyz(backend: Backend) -> Response[dict[str, Any]]:
    """NATS is reachable, the event stream exists, and its disk is not full."""
    full = backend.storage.shortage()
    if full is not None:
        return Response(
            {"status": "storage_exhausted", "reason": f"the event store is out of disk space "
             f"({full}); commands are refused until space returns, reads go on"},
            status_code=503,
            headers={"Retry-After": "5"},
        )  # fmt: skip
    try:
        info = await backend.nc.jetstream().stream_info(backend.nats_settings.stream)
    except (TimeoutError, NatsError) as exc:
        return Response(
            {"status": "unavailable", "reason": str(exc) or type(exc).__name__}, status_code=503
        )
    return Response(
        {
            "status": "ready",
            "stream": backend.nats_settings.stream,
            "last_sequence": info.state.last_seq,
        }
    )


# The classic text exposition format, which `generate_latest` writes and every Prometheus
# version parses; Litestar appends `; charset=utf-8` to any text/ type itself (so
# prometheus_client's CONTENT_TYPE_* constants, which carry it already, would send it twice).
METRICS_TYPE = "text/plain; version=0.0.4"


@get("/metrics", tags=["health"], media_type=METRICS_TYPE)
async def metrics() -> Response[bytes]:
    """Prometheus metrics of this gateway process (text format 0.0.4, UTF-8)."""
    return Response(generate_latest(), media_type=METRICS_TYPE)


def _lifespan(
    nats_settings: NatsSettings, settings: GatewaySettings
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan: NATS connected, then the SSE feeds' shared parts
    (`gateway/feed/process.py`) and the live-query hub, stopped in the reverse order and
    NATS drained last."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await bus.connect(nats_settings, name="ironstar-gateway")
        app.state.backend = Backend(
            nc=nc,
            nats_settings=nats_settings,
            settings=settings,
            closing=app.state.closing,
            storage=StorageWatch.of(settings.storage_paths),
        )
        await consumers.check_sizing(nc, nats_settings.stream, settings)
        app.state.feeds = await FeedProcess.start(
            nc,
            stream=nats_settings.stream,
            all_events=app.state.backend.subjects.all_events,
            settings=settings,
            closing=app.state.closing,
            replicas=nats_settings.replicas,
        )
        hub = app.state.live = Hub(
            settings.live_concurrency,
            settings.live_max_queries,
            settings.live_max_subscriptions,
            settings.live_max_per_principal,
            settings.live_max_queries_per_principal,
            settings.query_timeout_s,
        )
        await hub.start(nc, app.state.backend.subjects.applied)
        closer = asyncio.create_task(hub.close_on(app.state.closing))
        try:
            yield
        finally:
            closer.cancel()
            await app.state.feeds.stop()  # the feeds' last acks go out before NATS drains
            await hub.stop()
            await bus.goodbye(nc)

    return lifespan


def create_app(
    nats_settings: NatsSettings,
    settings: GatewaySettings,
    auth: AuthSettings | None = None,
    limits: LimitSettings | None = None,
) -> Litestar:
    """The gateway's Litestar app: health, metrics, commands, SQL, the catalogue's reads, the SSE
    feed, live queries and the dashboard, behind the front door (`gateway/security/`); NATS, the
    feeds' shared parts and the live hub open in its lifespan. `auth`/`limits` default to their
    settings' defaults (auth off: loopback only, see `bind_notice`)."""
    security = Security(auth or AuthSettings(), limits or LimitSettings(), settings)

    def provide_backend(state: State) -> Backend:
        backend: Backend = state.backend
        return backend

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            CommandController,
            SqlController,
            *reads.routes(catalogues.current()),
            EventsController,
            LiveController,
            *dashboard.routes(),
            *security.route_handlers,
        ],
        dependencies={"backend": Provide(provide_backend, sync_to_thread=False)},
        lifespan=[_lifespan(nats_settings, settings)],
        state=State({"closing": asyncio.Event(), **security.state()}),
        exception_handlers=HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Ironstar gateway", version="0.1.0", path="/schema"),
        logging_config=None,  # structlog owns logging: see common/telemetry.py
        debug=False,
        **security.app_options(),
    )
