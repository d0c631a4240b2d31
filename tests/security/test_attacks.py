"""The attack list: each refused as designed, and the service stays up afterwards."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings
from tests.support.secured import SecuredStack, bearer, token, unique

pytestmark = pytest.mark.e2e

INJECTIONS = ["a.b", "a*", ">", "a b", "a\tb", "ä", "x" * 65, "a.>", "..", "a%2Eb", "*"]


@pytest.fixture
async def http(stack: SecuredStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        yield client


async def _still_serves(http: httpx.AsyncClient) -> None:
    headers = bearer("commands:todo_list", subject=unique("after"))
    reply = await http.post(
        f"/api/commands/todo_list/{unique()}",
        json={"type": "add_todo", "payload": {"todo_id": "t", "text": "still here"}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text


async def _stream_subjects(stack: SecuredStack) -> set[str]:
    settings = NatsSettings(
        url=stack.env["IRONSTAR_NATS_URL"],
        prefix=stack.env["IRONSTAR_NATS_PREFIX"],
        stream=stack.env["IRONSTAR_NATS_STREAM"],
    )
    nc: Client = await bus.connect(settings, name="attack-check")
    try:
        info = await nc.jetstream().stream_info(settings.stream, subjects_filter=">")
        return set((info.state.subjects or {}).keys())
    finally:
        await nc.drain()


async def test_subject_injection_ids_are_refused_and_never_become_subjects(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    headers = bearer("admin", subject=unique("inject"))
    body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "x"}}
    for bad in INJECTIONS:
        segment = quote(bad, safe="")
        reply = await http.post(f"/api/commands/todo_list/{segment}", json=body, headers=headers)
        assert reply.status_code in (404, 422), (bad, reply.text)
        if reply.status_code == 422:
            assert reply.json()["field"] == "aggregate_id"
        typed = await http.post(f"/api/commands/{segment}/x", json=body, headers=headers)
        assert typed.status_code in (403, 404), (bad, typed.text)
        command = await http.post(
            f"/api/commands/todo_list/{unique()}", json={**body, "command_id": bad}, headers=headers
        )
        assert command.status_code == 422 and command.json()["field"] == "command_id", bad
        async with http.stream(
            "GET", "/api/events", params={"topics": f"todo_list:{bad}"}, headers=headers
        ) as feed:
            assert feed.status_code == 422, bad
    subjects = await _stream_subjects(stack)
    for subject in subjects:
        assert all(ch not in subject for ch in "*> \t"), subject
        assert len(subject.split(".")) == 4, subject
    await _still_serves(http)


async def test_oversize_and_overdeep_bodies_are_refused_with_413(http: httpx.AsyncClient) -> None:
    headers = bearer("commands:todo_list", "sql", subject=unique("big"))
    url = f"/api/commands/todo_list/{unique()}"
    huge = await http.post(url, content=b'{"type": "' + b"x" * 70_000 + b'"}', headers=headers)
    assert huge.status_code == 413 and "bytes" in huge.json()["message"]
    deep = b'{"type": "add_todo", "payload": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}"
    nested = await http.post(url, content=deep, headers=headers)
    assert nested.status_code == 413 and nested.json()["field"].startswith("payload.a")
    long_text = {"type": "add_todo", "payload": {"todo_id": "t", "text": "y" * 20_000}}
    field = await http.post(url, json=long_text, headers=headers)
    assert field.status_code == 413 and field.json()["field"] == "payload.text"
    malformed = await http.post(url, content=b'{"type": ', headers=headers)
    assert malformed.status_code == 400
    await _still_serves(http)


async def test_command_yielding_more_events_than_allowed_is_refused_with_413(
    http: httpx.AsyncClient,
) -> None:
    headers = bearer("commands:todo_list", subject=unique("many"))
    url = f"/api/commands/todo_list/{unique()}"
    for todo in ("a", "b", "c"):
        body = {"type": "add_todo", "payload": {"todo_id": todo, "text": todo}}
        assert (await http.post(url, json=body, headers=headers)).status_code == 200
        body = {"type": "complete_todo", "payload": {"todo_id": todo}}
        assert (await http.post(url, json=body, headers=headers)).status_code == 200
    reply = await http.post(url, json={"type": "clear_completed"}, headers=headers)
    assert reply.status_code == 413  # IRONSTAR_WRITER_MAX_EVENTS_PER_COMMAND=2
    assert "would append 3 events" in reply.json()["message"]


async def test_slowloris_request_body_is_cut_off_with_408(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    auth = bearer("commands:todo_list", subject=unique("slow"))["Authorization"]
    writer.write(
        f"POST /api/commands/todo_list/{unique()} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
    )
    started = time.monotonic()
    status = b""

    async def dribble() -> None:
        while True:
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)  # the attack itself: one byte every 100 ms

    dribbling = asyncio.create_task(dribble())
    try:
        status = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        dribbling.cancel()
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert time.monotonic() - started < 4  # IRONSTAR_LIMIT_BODY_TIMEOUT_S=1
    await _still_serves(http)


async def test_slowloris_request_headers_are_cut_off_with_408(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()

    async def dribble() -> None:
        while True:
            writer.write(b"X")  # a header line that never ends
            await writer.drain()
            await asyncio.sleep(0.1)  # the attack itself: one byte every 100 ms

    dribbling = asyncio.create_task(dribble())
    try:
        status = await asyncio.wait_for(reader.readline(), timeout=5)
        rest = await asyncio.wait_for(reader.read(), timeout=5)  # then the server closes
    finally:
        dribbling.cancel()
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert b"connection: close" in rest
    assert time.monotonic() - started < 4  # IRONSTAR_LIMIT_HEADER_TIMEOUT_S=1
    await _still_serves(http)


async def test_ten_thousand_connection_attempts_from_one_client_are_refused_and_it_stays_up(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    flood = token("read:todo_list", subject="flood")
    request = (
        "GET /api/events?topics=todo_list&client_id=flood HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {flood}\r\nConnection: close\r\n\r\n"
    ).encode()
    statuses: Counter[int] = Counter()

    async def attempt() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        except OSError:
            statuses[0] += 1  # refused at the socket: also a refusal
            return
        try:
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            statuses[int(line.split()[1]) if line else 0] += 1
        finally:
            writer.close()

    async def worker(count: int) -> None:
        for _ in range(count):
            await attempt()

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker(200) for _ in range(50))), timeout=90)
    assert sum(statuses.values()) == 10_000
    # 409: an arrival superseded by a newer one of the same client id and topics (takeover)
    assert set(statuses) <= {200, 409, 429, 503, 0}, statuses
    assert statuses[429] > 9_000, statuses  # 50/s with a burst of 100
    assert time.monotonic() - started < 90
    health = await http.get("/healthz")
    assert health.status_code == 200
    await _still_serves(http)
