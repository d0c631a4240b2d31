"""`POST /api/commands/...` over real HTTP: the result and every error status of the design."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ironstar.natsserver import NatsServer, free_port
from tests.support.processes import Service

pytestmark = pytest.mark.e2e


def environment(nats_server: NatsServer, prefix: str) -> dict[str, str]:
    return {
        "IRONSTAR_NATS_URL": nats_server.url,
        "IRONSTAR_NATS_PREFIX": prefix,
        "IRONSTAR_NATS_STREAM": prefix.upper(),
        "IRONSTAR_GATEWAY_PORT": str(free_port()),
    }


@dataclass(frozen=True)
class Stack:
    gateway: str
    writer_metrics: str
    writer_log: Path


@pytest.fixture(scope="module")
def stack(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One writer and one gateway for the module: every test uses its own aggregate ids."""
    env, workdir = environment(nats_server, "http"), tmp_path_factory.mktemp("http")
    env["IRONSTAR_WRITER_METRICS_PORT"] = str(free_port())
    writer, gateway = (Service(name, env, workdir).start() for name in ("writer", "gateway"))
    yield Stack(
        gateway=f"http://127.0.0.1:{env['IRONSTAR_GATEWAY_PORT']}",
        writer_metrics=f"http://127.0.0.1:{env['IRONSTAR_WRITER_METRICS_PORT']}/metrics",
        writer_log=writer.log,
    )
    for service in (gateway, writer):
        assert service.stop() == 0


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
        yield client


def path(kind: str = "todo_list", aggregate_id: str | None = None) -> str:
    return f"{kind}/{aggregate_id or uuid.uuid4().hex}"


async def post(
    http: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(f"/api/commands/{path}", content=content, headers=headers)


def error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["error"] == code and body["message"], body
    return body


ADD = {"type": "add_todo", "payload": {"todo_id": "milk", "text": "Buy milk"}}


async def test_a_command_returns_its_events_sequence_and_version(http: httpx.AsyncClient) -> None:
    one = path()
    reply = await post(http, one, {**ADD, "command_id": "c-1"})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["version"], len(result["events"])) == (1, 1)
    event = result["events"][0]
    assert (event["event_type"], event["schema"], event["payload"]["text"]) == (
        "todo_added",
        2,
        "Buy milk",
    )
    assert event["metadata"]["command_id"] == "c-1"
    again = await post(http, one, {**ADD, "command_id": "c-1"})
    assert again.json() == {**result, "duplicate": True}


async def test_completing_a_completed_todo_is_200_with_no_events(http: httpx.AsyncClient) -> None:
    one = path()
    await post(http, one, ADD)
    complete = {"type": "complete_todo", "payload": {"todo_id": "milk"}}
    first = (await post(http, one, complete)).json()
    reply = await post(http, one, complete)
    assert reply.status_code == 200
    assert reply.json()["events"] == [] and reply.json()["sequence"] == first["sequence"]


async def test_malformed_json_is_rejected_with_400(http: httpx.AsyncClient) -> None:
    one = path()
    body = error(await post(http, one, b'{"type": '), 400, "bad_request")
    assert "not valid JSON" in body["message"]


async def test_an_unknown_aggregate_type_is_rejected_with_404_naming_the_known_ones(
    http: httpx.AsyncClient,
) -> None:
    body = error(await post(http, path("shopping_cart"), ADD), 404, "not_found")
    assert body["field"] == "aggregate_type" and "todo_list" in body["message"]


async def test_an_unknown_command_is_rejected_with_404_naming_the_known_ones(
    http: httpx.AsyncClient,
) -> None:
    one = path()
    body = error(await post(http, one, {"type": "archive"}), 404, "not_found")
    assert body["field"] == "type" and "add_todo" in body["message"]


async def test_a_broken_rule_is_rejected_with_409_in_words(http: httpx.AsyncClient) -> None:
    one = path()
    reply = await post(http, one, {"type": "delete_todo", "payload": {"todo_id": "x"}})
    assert "does not exist" in error(reply, 409, "rule_violation")["message"]


async def test_stale_if_match_is_rejected_with_412(http: httpx.AsyncClient) -> None:
    one = path()
    first = (await post(http, one, ADD)).json()
    rename = {"type": "rename_todo", "payload": {"todo_id": "milk", "text": "Oat milk"}}
    moved = await post(http, one, rename, {"If-Match": str(first["sequence"])})
    assert moved.status_code == 200
    stale = await post(http, one, rename, {"If-Match": f'"{first["sequence"]}"'})
    body = error(stale, 412, "stale_version")
    assert body["sequence"] == moved.json()["sequence"]


async def test_a_body_over_the_limit_is_rejected_with_413(http: httpx.AsyncClient) -> None:
    one = path()
    big = {"type": "add_todo", "payload": {"todo_id": "a", "text": "x" * 70_000}}
    error(await post(http, one, big), 413, "too_large")


@pytest.mark.parametrize("bad_id", ["a.b", "*", ">", "a b", "x" * 65])
async def test_an_invalid_aggregate_id_is_rejected_with_422(
    http: httpx.AsyncClient, bad_id: str
) -> None:
    body = error(await post(http, path(aggregate_id=bad_id), ADD), 422, "invalid")
    assert body["field"] == "aggregate_id"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"todo_id": "a"}, "text"),
        ({"todo_id": "a", "text": 7}, "text"),
        ({"todo_id": "a", "text": " "}, "text"),
        ({"todo_id": "a.b", "text": "x"}, "todo_id"),
        ({"todo_id": "a", "text": "x", "colour": "red"}, "colour"),
    ],
)
async def test_an_invalid_payload_is_rejected_with_422_naming_the_field(
    http: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    one = path()
    reply = await post(http, one, {"type": "add_todo", "payload": payload})
    assert error(reply, 422, "invalid")["field"] == field


async def test_an_invalid_command_id_or_if_match_is_rejected_with_422(
    http: httpx.AsyncClient,
) -> None:
    one = path()
    body = error(await post(http, one, {**ADD, "command_id": "a>b"}), 422, "invalid")
    assert body["field"] == "command_id"
    body = error(await post(http, one, ADD, {"If-Match": "latest"}), 422, "invalid")
    assert body["field"] == "If-Match"


async def test_no_running_writer_is_503_with_retry_after(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = environment(nats_server, "nowriter")
    gateway = Service("gateway", env, tmp_path).start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{env['IRONSTAR_GATEWAY_PORT']}"
        ) as client:
            reply = await post(client, path(), ADD)
    finally:
        assert gateway.stop() == 0
    assert "no writer is running" in error(reply, 503, "unavailable")["message"]
    assert reply.headers["Retry-After"] == "1"


async def test_the_writer_counts_commands_and_events_and_logs_their_ids(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    one = path()
    await post(http, one, {**ADD, "command_id": "metrics-1"})
    refused = {"type": "delete_todo", "payload": {"todo_id": "nope"}, "command_id": "refused-1"}
    await post(http, one, refused, {"X-Correlation-Id": "corr-refused-1"})
    metrics = (await http.get(stack.writer_metrics)).text
    for line in (
        'events_appended_total{aggregate_type="todo_list"}',
        'commands_total{outcome="ok",type="add_todo"}',
        'commands_total{outcome="rule_violation",type="delete_todo"}',
        "append_duration_seconds_count",
        "append_conflicts_total",
        "append_retries_total",
    ):
        assert line in metrics, line
    logged = [json.loads(line) for line in stack.writer_log.read_text().splitlines() if "{" in line]
    refusal = next(entry for entry in logged if entry.get("command_id") == "refused-1")
    assert refusal["event"] == "command_refused" and refusal["code"] == "rule_violation"
    assert refusal["correlation_id"] == "corr-refused-1"
