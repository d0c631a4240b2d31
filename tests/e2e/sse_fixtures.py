"""Fixtures of the SSE process tests: gateway processes against this test's stream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ironstar.natsserver import free_port
from tests.support.processes import Service

Start = Callable[..., tuple[Service, str]]


@pytest.fixture
def start_gateway(service_env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """Start a gateway process (extra settings as keyword arguments); stopped after the test."""
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
async def http() -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(base: str, receive_buffer: int = 0) -> httpx.AsyncClient:
        """A client; `receive_buffer` shrinks its sockets' kernel buffer (a slow reader)."""
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)] if receive_buffer else []
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=options)
        client = httpx.AsyncClient(base_url=base, timeout=10, transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def metric(client: httpx.AsyncClient, name: str) -> float:
    """The sum of a metric's samples on the gateway's /metrics (0 when absent, or when a
    gateway busy with a flood does not answer within the client's timeout: callers poll)."""
    try:
        text = (await client.get("/metrics")).text
    except httpx.TimeoutException:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )
