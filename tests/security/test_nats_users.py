"""`ironstar up` gives each service its own NATS user that can touch only its subjects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import nats
import pytest

from common import bus
from common.errors import Unavailable
from common.settings import NatsSettings
from ironstar.natsserver import free_port
from ironstar.up import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("up") / "data", http_port=free_port(), nats_port=free_port()
    )
    try:
        stack.start(say=False)
        yield stack
    finally:
        stack.stop()


def _as(stack: Stack, service: str) -> NatsSettings:
    assert stack.nats is not None
    user = stack.nats_users[service]
    return NatsSettings(url=stack.nats.url, user=user.name, password=user.password)


async def test_gateway_user_cannot_publish_to_the_event_stream(local: Stack) -> None:
    settings = _as(local, "gateway")
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(settings.url, error_cb=on_error, **bus.credentials(settings))
    try:
        js = nc.jetstream()
        before = (await js.stream_info(settings.stream)).state.last_seq
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request("ironstar.events.todo_list.forged", b"{}", timeout=1)
        assert any("permissions violation for publish" in e.lower() for e in errors), errors
        assert (await js.stream_info(settings.stream)).state.last_seq == before
    finally:
        await nc.close()


async def test_services_work_end_to_end_with_their_own_users(local: Stack) -> None:
    base = f"http://{local.http_host}:{local.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        reply = await http.post(
            "/api/commands/todo_list/users-test",
            json={"type": "add_todo", "payload": {"todo_id": "t", "text": "permitted"}},
        )
        assert reply.status_code == 200, reply.text
        read = await http.get(
            "/api/todo-lists/users-test", params={"min_seq": reply.json()["sequence"]}
        )
        assert read.status_code == 200, read.text
        # a live event reaches a feed through the gateway's live tail, which its user may run
        async with http.stream(
            "GET", "/api/events", params={"topics": "todo_list:users-test"}
        ) as feed:
            lines = feed.aiter_lines()
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("event: connected"):
                        break
                await http.post(
                    "/api/commands/todo_list/users-test",
                    json={"type": "add_todo", "payload": {"todo_id": "u", "text": "live"}},
                )
                async for line in lines:
                    if line.startswith("event: todo_added"):
                        break
        metrics = (await http.get("/metrics")).text
        assert "sse_tail_joined_total 0.0" not in metrics and "sse_tail_joined_total" in metrics
    gateway_log = (local.data_dir / "logs" / "gateway.log").read_text()
    assert "permissions violation" not in gateway_log and "sse_tail_not_started" not in gateway_log
    conf = local.data_dir / "nats-server.conf"
    assert conf.stat().st_mode & 0o777 == 0o600


async def test_connecting_without_credentials_is_refused_with_a_clear_error(local: Stack) -> None:
    assert local.nats is not None
    anonymous = NatsSettings(url=local.nats.url)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="refused our credentials"):
        await asyncio.wait_for(bus.connect(anonymous, name="anonymous", wait_s=5), 10)
    assert time.monotonic() - started < 5  # at once, not after retrying to the deadline
