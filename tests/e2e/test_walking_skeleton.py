"""The thin path end to end: `ironstar up` as a process, driven over HTTP and SSE."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from ironstar.natsserver import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie has exited


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    output = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "ironstar", "up", "--data-dir", str(tmp_path / "data"),
         "--http-port", str(port), "--nats-port", str(free_port())],
        stdout=output,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
        process.wait()
    output.close()


@pytest.fixture
async def http(
    stack: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    process, base = stack
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def health() -> int:
            assert process.poll() is None, "ironstar up exited early; see up.log"
            try:
                return (await client.get("/healthz")).status_code
            except httpx.TransportError:
                return 0

        await eventually(health, lambda status: status == 200, timeout=30)

        # The gateway answers before every service is up; `up` says when all of them are.
        async def banner() -> str:
            return (tmp_path / "up.log").read_text()

        await eventually(banner, lambda text: "ironstar: running" in text, timeout=30)
        yield client


async def _read_events(
    client: httpx.AsyncClient, count: int, **headers: str
) -> list[tuple[int, str, dict]]:
    events: list[tuple[int, str, dict]] = []
    params = {"topics": "todo_list"}
    if not headers:
        params["last_event_id"] = "0"
    async with aconnect_sse(client, "GET", "/api/events", params=params, headers=headers) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            if sse.id and sse.event != "connected":  # connected carries its position too
                events.append((int(sse.id), sse.event, json.loads(sse.data)))
            if len(events) == count:
                return events
    raise AssertionError(f"the feed ended after {events}")


async def test_command_flows_to_read_model_and_resumable_sse(
    stack: tuple[subprocess.Popen[bytes], str], http: httpx.AsyncClient
) -> None:
    texts = ["write the spec", "build the skeleton", "ship it"]
    sequences = []
    for number, text in enumerate(texts):
        reply = await http.post(
            "/api/commands/todo_list/groceries",
            json={"type": "add_todo", "payload": {"todo_id": f"t{number}", "text": text}},
        )
        assert reply.status_code == 200, reply.text
        sequences.append(reply.json()["sequence"])
    assert sequences == sorted(sequences)

    listed = await http.get("/api/todo-lists/groceries", params={"min_seq": sequences[-1]})
    assert listed.status_code == 200, listed.text
    assert [item["text"] for item in listed.json()["result"]["items"]] == texts

    everything = await _read_events(http, 3)
    assert [seq for seq, _, _ in everything] == sequences
    assert [event["payload"]["text"] for _, _, event in everything] == texts
    assert {kind for _, kind, _ in everything} == {"todo_added"}

    resumed = await _read_events(http, 2, **{"Last-Event-ID": str(sequences[0])})
    assert [seq for seq, _, _ in resumed] == sequences[1:]

    process, _ = stack
    children = _children(process.pid)
    assert len(children) == 4  # nats-server, writer, projector, gateway
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not [pid for pid in children if _alive(pid)]
