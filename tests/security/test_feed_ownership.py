"""A feed belongs to its principal, and no principal can exhaust the stream's consumers:
real gateway, writer and projector processes with auth on, small budgets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings
from ironstar.natsserver import NatsServer, free_port
from tests.support.feeds import feed
from tests.support.processes import Service
from tests.support.secured import SecuredStack, bearer, running, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

PER_PRINCIPAL, MAX_CONSUMERS, RESERVED = 10, 40, 10


@pytest.fixture(scope="module")
def budgeted(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    with running(
        nats_server,
        tmp_path_factory.mktemp("budgeted"),
        IRONSTAR_LIMIT_REQUESTS_PER_S="0",
        IRONSTAR_NATS_MAX_CONSUMERS=str(MAX_CONSUMERS),
        IRONSTAR_GATEWAY_SSE_MAX_CONSUMERS_PER_PRINCIPAL=str(PER_PRINCIPAL),
        IRONSTAR_GATEWAY_SSE_RESERVED_CONSUMERS=str(RESERVED),
    ) as stack:
        yield stack


@pytest.fixture
async def http(budgeted: SecuredStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=budgeted.base, timeout=10) as client:
        yield client


@pytest.fixture
async def js_nc(budgeted: SecuredStack) -> AsyncIterator[Client]:
    nc = await bus.connect(_nats(budgeted), name="ownership-check")
    yield nc
    await nc.drain()


def _nats(stack: SecuredStack) -> NatsSettings:
    env = stack.env
    return NatsSettings(
        url=env["IRONSTAR_NATS_URL"],
        prefix=env["IRONSTAR_NATS_PREFIX"],
        stream=env["IRONSTAR_NATS_STREAM"],
    )


async def _consumers(nc: Client, stack: SecuredStack) -> int:
    info = await nc.jetstream().stream_info(stack.env["IRONSTAR_NATS_STREAM"])
    return int(info.state.consumer_count)


async def _add(http: httpx.AsyncClient, list_id: str, *todos: str) -> int:
    admin = bearer("admin", subject=unique("writer"))
    sequence = 0
    for todo in todos:
        body = {"type": "add_todo", "payload": {"todo_id": todo, "text": todo}}
        reply = await http.post(f"/api/commands/todo_list/{list_id}", json=body, headers=admin)
        assert reply.status_code == 200, reply.text
        sequence = reply.json()["sequence"]
    return sequence


async def _status(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> int:
    async with http.stream("GET", "/api/events", params=params, headers=headers) as reply:
        return reply.status_code


async def test_another_principal_reusing_a_client_id_cannot_drain_or_reset_its_owners_feed(
    http: httpx.AsyncClient, budgeted: SecuredStack, js_nc: Client
) -> None:
    list_id, client = unique("l"), unique("shared")
    alice = bearer("read:todo_list", subject=unique("alice"))
    mallory = bearer("read:todo_list", subject=unique("mallory"))
    topics = f"todo_list:{list_id}"
    async with feed(http, alice, topics=topics, client_id=client) as reader:
        hers = (await reader.until("connected"))[-1].data["consumer"]
    missed = ["a", "b", "c"]
    await _add(http, list_id, *missed)
    stream = budgeted.env["IRONSTAR_NATS_STREAM"]
    before = await js_nc.jetstream().consumer_info(stream, hers)
    # Mallory asks for Alice's client id, from the start, twice: consumers of her own
    for attempt in range(2):
        params = {"topics": topics, "client_id": client, "last_event_id": "0"}
        async with feed(http, mallory, **params) as reader:
            opened = await reader.until("connected")
            assert opened[-1].data["consumer"] != hers, attempt
            drained = await reader.events(3)
            assert [m.data["payload"]["todo_id"] for m in drained] == missed
    after = await js_nc.jetstream().consumer_info(stream, hers)
    assert after.config.opt_start_seq == before.config.opt_start_seq  # not reset
    assert after.ack_floor.stream_seq == before.ack_floor.stream_seq  # not drained
    assert after.num_pending + after.num_ack_pending == 3  # what Alice missed waits for her


async def test_another_principal_holding_connections_under_a_client_id_does_not_lock_out_its_owner(
    http: httpx.AsyncClient,
) -> None:
    client = unique("tab")
    mallory = bearer("read:todo_list", subject=unique("mallory"))
    async with contextlib.AsyncExitStack() as held:
        for n in range(8):  # the per-client-id connection limit, under Alice's id
            await held.enter_async_context(
                feed(http, mallory, topics=f"todo_list:m{n}", client_id=client)
            )
        assert await _status(http, mallory, topics="todo_list:m9", client_id=client) == 429
        alice = bearer("read:todo_list", subject=unique("alice"))
        assert await _status(http, alice, topics="todo_list:m0", client_id=client) == 200


async def test_a_principal_dropping_feeds_with_fresh_client_ids_hits_its_budget_with_429(
    http: httpx.AsyncClient,
) -> None:
    greedy = bearer("read:todo_list", subject=unique("greedy"))
    for n in range(PER_PRINCIPAL):
        assert await _status(http, greedy, topics="todo_list", client_id=unique(f"f{n}")) == 200
    async with http.stream(
        "GET",
        "/api/events",
        params={"topics": "todo_list", "client_id": unique("m")},
        headers=greedy,
    ) as refused:
        body = (await refused.aread()).decode()
        assert refused.status_code == 429, body
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        assert "sse_max_consumers_per_principal" in body.lower() or "MAX_CONSUMERS" in body
        assert "omit" not in body and "retry after" in body  # advice that helps
    assert await _status(http, greedy, topics="todo_list") == 429  # omitting it does not help
    # a consumer it still holds can be reopened; another principal is not affected
    other = bearer("read:todo_list", subject=unique("other"))
    assert await _status(http, other, topics="todo_list", client_id=unique("o")) == 200


async def test_feeds_without_a_client_id_delete_their_consumer_and_never_hit_the_budget(
    http: httpx.AsyncClient, budgeted: SecuredStack, js_nc: Client
) -> None:
    before = await _consumers(js_nc, budgeted)
    who = bearer("read:todo_list", subject=unique("tabs"))
    for _ in range(3 * PER_PRINCIPAL):
        async with feed(http, who, topics="todo_list") as reader:
            await reader.until("connected")
    await eventually(lambda: _consumers(js_nc, budgeted), lambda n: n <= before, timeout=15)


async def test_a_feed_without_client_id_resumes_by_last_event_id_after_its_consumer_is_gone(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("r")
    reader_token = bearer("read:todo_list", subject=unique("resumer"))
    first = await _add(http, list_id, "one")
    params = {"topics": f"todo_list:{list_id}", "last_event_id": str(first - 1)}
    async with feed(http, reader_token, **params) as reader:
        got = await reader.events(1)
    await _add(http, list_id, "two", "three")
    params["last_event_id"] = str(got[-1].id)
    async with feed(http, reader_token, **params) as reader:
        rest = await reader.events(2)
    assert [m.data["payload"]["todo_id"] for m in got + rest] == ["one", "two", "three"]


async def test_feeds_never_take_the_consumers_kept_for_projectors(
    http: httpx.AsyncClient, budgeted: SecuredStack, js_nc: Client, tmp_path: Path
) -> None:
    statuses = []
    for principal in range(MAX_CONSUMERS // PER_PRINCIPAL + 1):
        who = bearer("read:todo_list", subject=unique(f"crowd{principal}"))
        for n in range(PER_PRINCIPAL):
            statuses.append(await _status(http, who, topics="todo_list", client_id=f"c{n}"))
    assert 503 in statuses and set(statuses) <= {200, 503}, statuses
    assert await _consumers(js_nc, budgeted) <= MAX_CONSUMERS - RESERVED
    async with http.stream(
        "GET", "/api/events", params={"client_id": "late"}, headers=bearer("read:*")
    ) as refused:
        body = (await refused.aread()).decode()
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert "SSE_RESERVED_CONSUMERS" in body
    # a projector replica (re)starting still creates its consumer, and answers
    env = {
        **budgeted.env,
        "IRONSTAR_PROJECTOR_NAME": "projector-2",
        "IRONSTAR_PROJECTOR_DATA_DIR": str(tmp_path / "p2"),
    }
    replica = Service("projector", env, tmp_path).start()
    try:
        sequence = await _add(http, unique("after"), "x")
        read = await http.get(
            "/api/todo-lists", params={"min_seq": sequence}, headers=bearer("read:*")
        )
        assert read.status_code == 200
        assert replica.process is not None and replica.process.poll() is None
    finally:
        replica.stop()


async def test_without_auth_one_client_address_has_the_same_budget(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = NatsSettings(url=nats_server.url, prefix=unique("n"), stream=unique("N").upper())
    nc = await bus.connect(settings, name="no-auth-budget")
    await bus.ensure_stream(nc, settings)
    await nc.drain()
    env = {
        "IRONSTAR_NATS_URL": settings.url,
        "IRONSTAR_NATS_PREFIX": settings.prefix,
        "IRONSTAR_NATS_STREAM": settings.stream,
        "IRONSTAR_GATEWAY_PORT": str(free_port()),
        "IRONSTAR_GATEWAY_SSE_MAX_CONSUMERS_PER_PRINCIPAL": "3",
        "IRONSTAR_AUTH_SECRET": "",
    }
    gateway = Service("gateway", env, tmp_path).start()
    try:
        base = f"http://127.0.0.1:{env['IRONSTAR_GATEWAY_PORT']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            codes = [await _status(client, {}, client_id=f"n{n}") for n in range(4)]
            assert codes == [200, 200, 200, 429]
            assert await _status(client, {}, client_id="n0") == 200  # its own, again
            assert await _status(client, {}) == 429  # a consumer all the same
    finally:
        gateway.stop()
