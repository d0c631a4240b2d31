"""Fixtures of the e2e tier: gateway processes on this test's stream, HTTP clients.

The session's nats-server, the per-test stream (`nats_settings`, `nc`), `service_env` and
the whole `stack` come from tests/conftest.py. Some modules define their own `http` fixture
(one client on their stack), which overrides the client factory below in that module.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ironstar.natsserver import free_port
from tests.support.gateways import Http, Start
from tests.support.processes import Service


@pytest.fixture
def start_gateway(service_env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """Start a gateway process (extra settings as keyword arguments); killed after the test."""
    started: list[Service] = []

    def start(**settings: object) -> tuple[Service, str]:
        port = free_port()
        env = {**service_env, "IRONSTAR_GATEWAY_PORT": str(port)}
        env.update({f"IRONSTAR_GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
        service = Service("gateway", env, tmp_path).start()
        started.append(service)
        return service, f"http://127.0.0.1:{port}"

    yield start
    for service in started:
        if service.process is not None and service.process.poll() is None:
            service.kill()


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    """A factory of HTTP clients (see `make`); every client is closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def make(base: str, receive_buffer: int = 0, timeout: float = 10) -> httpx.AsyncClient:
        """A client; `receive_buffer` (bytes) shrinks its sockets' kernel buffer (a slow
        reader); `timeout` (s) bounds each connect, write and read."""
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)] if receive_buffer else []
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=options)
        client = httpx.AsyncClient(base_url=base, timeout=timeout, transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
