"""The gateway's composition root: serve the app with uvicorn under our own signals.

uvicorn waits for open streaming responses before it shuts down, and SSE streams never end
on their own: so on stop the app's `closing` event is set first, every stream sends a
jittered `retry:` and ends, and only then is uvicorn told to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import uvicorn

from common.errors import Unavailable
from common.origins import proxy_networks
from common.settings import (
    AuthSettings,
    GatewaySettings,
    LimitSettings,
    NatsSettings,
)
from gateway.api.head import HeadAsGet
from gateway.app import create_app
from gateway.feed.direct import Capture, tracked
from gateway.security.auth import bind_notice, verifier
from gateway.security.deadlines import header_deadline


def _listen(host: str, port: int, send_buffer: int = 0) -> socket.socket:
    """Bind ourselves, so a busy port is one clear error instead of uvicorn's exit.

    A `send_buffer` set here is inherited by every accepted connection: it bounds the bytes
    a non-reading SSE client parks in the kernel before its feed stops pulling.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals are the runtime's: see common/runtime.py


async def serve(
    nats_settings: NatsSettings,
    settings: GatewaySettings,
    ready: Callable[[str], None],
    stop: asyncio.Event,
    auth: AuthSettings | None = None,
    limits: LimitSettings | None = None,
) -> None:
    """Run the gateway until `stop` is set: bind `settings.host:port` (refused off loopback without
    auth, see `bind_notice`), call `ready` with a line for the operator, then on stop set the app's
    `closing` (open feeds end with a `retry:`) and let uvicorn finish within 3 s. Raises Unavailable
    when the server stops while starting."""
    auth, limits = auth or AuthSettings(), limits or LimitSettings()
    notice = bind_notice(settings.host, verifier(auth))
    app = create_app(nats_settings, settings, auth, limits)
    proxies = proxy_networks(settings.trusted_proxies)
    config = uvicorn.Config(
        Capture(HeadAsGet(app)),  # the server's own send, for the fan-outs' direct writes
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
        http=tracked(header_deadline(limits.header_timeout_s)),  # feeds hear a loss (direct.py)
        # X-Forwarded-For/-Proto only from the configured proxies (none by default: uvicorn
        # would otherwise believe 127.0.0.1, so any local client could pick its address).
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
    )
    server = _Server(config)
    serving = asyncio.create_task(
        server.serve(
            sockets=[_listen(settings.host, settings.port, settings.sse_send_buffer_bytes)]
        )
    )
    while not server.started:
        if serving.done():
            serving.result()
            raise Unavailable("the gateway stopped while starting; see the log above")
        await asyncio.sleep(0.02)
    ready(f"gateway listening on http://{settings.host}:{settings.port}/ ({notice})")
    await asyncio.wait(
        {serving, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    app.state.closing.set()
    server.should_exit = True
    await serving
