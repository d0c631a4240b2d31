"""Gateway processes in e2e tests: the types of the `start_gateway` and `http` fixtures
(tests/e2e/conftest.py) and a reader of a gateway's /metrics."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.processes import Service

Start = Callable[..., tuple[Service, str]]
"""`start_gateway(**settings)`: each keyword becomes `IRONSTAR_GATEWAY_<KEY>`; returns the
running gateway and its base URL (`http://127.0.0.1:<port>`)."""

Http = Callable[..., httpx.AsyncClient]
"""`http(base, receive_buffer=0, timeout=10)`: an HTTP client closed after the test."""


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
