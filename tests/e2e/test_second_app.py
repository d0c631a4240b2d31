"""A second app, not the example, end to end as real processes: `tests.apps.inventory`.

Writer, projector and gateway load it from `IRONSTAR_APP`, with tokens required. Nothing
of Ironstar's own tree knows about stock items: commands (optimistic concurrency,
idempotency), its SQL projection over HTTP and NATS, the feed (resume and snapshot),
scoped tokens, `ironstar query` over its table and `ironstar rebuild --projection`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ironstar.natsserver import NatsServer
from tests.support.feeds import feed
from tests.support.processes import run_cli
from tests.support.secured import SECRET, bearer, running, unique

pytestmark = pytest.mark.e2e
ADMIN = bearer("admin")


@pytest.fixture(scope="module")
def inventory(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("inventory")
    with running(nats_server, workdir, IRONSTAR_APP="tests.apps.inventory") as stack:
        yield stack


@pytest.fixture
async def http(inventory: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=inventory.base, timeout=15) as client:
        yield client


async def _send(
    http: httpx.AsyncClient, sku: str, kind: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    command = {"type": kind, "payload": body.pop("payload", {}), **body}
    return await http.post(
        f"/api/commands/stock_item/{sku}", json=command, headers=headers or ADMIN
    )


async def test_commands_keep_their_rules_concurrency_and_idempotency(
    http: httpx.AsyncClient,
) -> None:
    sku = unique("sku")
    registered = await _send(http, sku, "register_item", payload={"name": "Bolt"})
    assert registered.status_code == 200, registered.text
    first = registered.json()["sequence"]
    received = await _send(http, sku, "receive", payload={"quantity": 5}, command_id=f"{sku}-r")
    again = await _send(http, sku, "receive", payload={"quantity": 5}, command_id=f"{sku}-r")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["sequence"] == received.json()["sequence"]
    stale = await http.post(
        f"/api/commands/stock_item/{sku}",
        json={"type": "ship", "payload": {"quantity": 1}},
        headers={**ADMIN, "If-Match": str(first)},
    )
    assert stale.status_code == 412, stale.text
    too_many = await _send(http, sku, "ship", payload={"quantity": 6})
    assert too_many.status_code == 409 and "only 5 on hand" in too_many.json()["message"]
    bad = await _send(http, sku, "ship", payload={"quantity": 0})
    assert bad.status_code == 422
    unknown = await http.post("/api/commands/todo_list/x", json={"type": "add_todo"}, headers=ADMIN)
    assert unknown.status_code == 404  # the example is not loaded


async def test_its_projection_answers_over_http_and_nats_and_the_feed_resumes(
    inventory: Any, http: httpx.AsyncClient
) -> None:
    sku = unique("sku")
    await _send(http, sku, "register_item", payload={"name": "Nut"})
    shipped = await _send(http, sku, "receive", payload={"quantity": 3})
    sequence = shipped.json()["sequence"]
    read = await http.get(
        "/api/read/stock/item", params={"sku": sku, "min_seq": sequence}, headers=ADMIN
    )
    assert read.status_code == 200, read.text
    assert read.json()["result"]["on_hand"] == 3
    env = {**inventory.env, "IRONSTAR_AUTH_SECRET": SECRET}
    query = run_cli(env, "query", "--json", f"SELECT on_hand FROM stock_levels WHERE sku = '{sku}'")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["result"]["rows"] == [[3]]

    topic = f"stock_item:{sku}"
    async with feed(http, ADMIN, topics=topic, last_event_id=str(sequence - 1)) as reader:
        resumed = await reader.events(1)
        assert resumed[0].id == sequence and resumed[0].event == "stock_received"
    async with feed(http, {**ADMIN, "Last-Event-ID": "99999999"}, topics=topic) as reader:
        snapshot = (await reader.until("snapshot"))[-1]
        assert snapshot.data[topic]["on_hand"] == 3


async def test_a_wrong_read_names_its_parameter_or_the_known_queries_and_projections(
    http: httpx.AsyncClient,
) -> None:
    async def problem(path: str, **params: str) -> tuple[int, str, str]:
        reply = await http.get(path, params=params, headers=ADMIN)
        return reply.status_code, reply.json().get("field", ""), reply.json()["message"]

    assert (await problem("/api/read/stock/low", threshold="abc"))[:2] == (422, "threshold")
    assert (await problem("/api/read/stock/item"))[:2] == (422, "sku")  # missing
    assert (await problem("/api/read/stock/item", sku="a", colour="red"))[:2] == (422, "colour")
    status, field, said = await problem("/api/read/stock/nope", sku="a")
    assert (status, field) == (404, "query") and "known: item, low" in said
    status, field, said = await problem("/api/read/nope/item")
    assert (status, field) == (404, "projection") and "stock" in said and "stream" in said
    status, field, said = await problem("/api/read/stock")
    assert (status, field) == (404, "query") and "known: item, low" in said
    for path in ("/api/read/nope/item", "/api/read/stock/nope", "/api/read/stock"):
        assert (await http.get(path)).status_code == 401  # no names for an anonymous caller


async def test_tokens_are_scoped_by_the_apps_grants(http: httpx.AsyncClient) -> None:
    sku = unique("sku")
    mine = bearer("commands:stock_item", f"read:stock_item:{sku}")
    registered = await _send(http, sku, "register_item", mine, payload={"name": "A"})
    assert registered.status_code == 200, registered.text
    at = registered.json()["sequence"]
    own = await http.get("/api/read/stock/item", params={"sku": sku, "min_seq": at}, headers=mine)
    other = await http.get("/api/read/stock/item", params={"sku": "someone-else"}, headers=mine)
    listing = await http.get("/api/read/stock/low", headers=mine)
    assert (own.status_code, other.status_code, listing.status_code) == (200, 403, 403)
    reader = bearer("read:stock_item")
    assert (await http.get("/api/read/stock/low", headers=reader)).status_code == 200
    assert (await _send(http, sku, "receive", reader, payload={"quantity": 1})).status_code == 403


def test_rebuild_of_its_projection_keeps_its_answers(inventory: Any, tmp_path: Path) -> None:
    env = {**inventory.env}
    before = run_cli(env, "query", "--json", "SELECT sum(on_hand) FROM stock_levels")
    rebuilt = run_cli(env, "rebuild", "--projection", "stock")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt stock" in rebuilt.stdout
    after = run_cli(env, "query", "--json", "SELECT sum(on_hand) FROM stock_levels")
    assert json.loads(after.stdout)["result"]["rows"] == json.loads(before.stdout)["result"]["rows"]
