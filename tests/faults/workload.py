"""A steady workload against every gateway: commands, read-your-writes queries, SSE clients.

Commands carry their own command id and are retried with the same id (on the other
gateway when one is unreachable) until they get a 200, so a retry can never apply twice.
Every reply that is not a 200 is counted by status; connection failures apart. SSE clients
resume with `Last-Event-ID` after any disconnect and record every event they were sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.support.waiting import eventually

PACE_S = 0.02  # between one writer's commands: load shaping on a 2-core machine
GIVE_UP_S = 30.0  # a command still failing after this long fails the round


@dataclass
class Tally:
    acked: dict[str, int] = field(default_factory=dict)  # command id → events it appended
    ack_times: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # replies other than 200
    unreachable: int = 0  # connection refused or reset: the client went to another gateway
    queries: int = 0
    stale_reads: int = 0  # a 200 to a min_seq query that did not contain the write

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged write after `since`."""
        times = sorted(t for t in self.ack_times if t >= since)
        if not times:
            return 0.0
        points = [since, *times]
        return max(b - a for a, b in itertools.pairwise(points))


@dataclass
class SseClient:
    client_id: str
    topics: str
    after: int  # resume position when the client started
    seen: list[tuple[int, str]] = field(default_factory=list)  # (sequence, command id)
    reconnects: int = 0
    snapshots: int = 0

    @property
    def position(self) -> int:
        return self.seen[-1][0] if self.seen else self.after


class Workload:
    def __init__(self, gateways: list[str], lists: list[str], start_seq: int) -> None:
        self.gateways = gateways
        self.lists = lists
        self.tally = Tally()
        self.stopping = asyncio.Event()
        self.clients = [
            SseClient(f"sse{n}{uuid.uuid4().hex[:8]}", topics, start_seq)
            for n, topics in enumerate([f"todo_list:{lists[0]}", "todo_list"])
        ]
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=2.0))
        self._tasks: list[asyncio.Task[None]] = []
        self._sse_tasks: list[asyncio.Task[None]] = []

    def start(self, writers: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._commands(n)) for n in range(writers)]
        self._sse_tasks = [
            asyncio.create_task(self._follow(client, n)) for n, client in enumerate(self.clients)
        ]

    async def acks(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` more writes were acknowledged."""
        target = len(self.tally.ack_times) + count
        await eventually(self._acked, lambda acked: acked >= target, timeout=timeout)

    async def stop(self) -> None:
        """Take no new commands; wait until every command in flight got its 200."""
        self.stopping.set()
        await asyncio.gather(*self._tasks)
        self._raise_failures()

    async def _acked(self) -> int:
        self._raise_failures()
        return len(self.tally.ack_times)

    def _raise_failures(self) -> None:
        for task in [*self._tasks, *self._sse_tasks]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"a workload client failed: {task.exception()!r}")

    async def drain(self, expected: dict[str, int], timeout: float = 30.0) -> None:
        """Wait until each SSE client reached the position `expected` gives for it."""

        async def behind() -> list[str]:
            self._raise_failures()
            return [
                f"{c.client_id} at {c.position} of {expected[c.client_id]}"
                for c in self.clients
                if c.position < expected[c.client_id]
            ]

        await eventually(behind, lambda stuck: not stuck, timeout=timeout)
        for task in self._sse_tasks:
            task.cancel()
        await asyncio.gather(*self._sse_tasks, return_exceptions=True)
        await self._http.aclose()

    async def _commands(self, writer: int) -> None:
        number = 0
        while not self.stopping.is_set():
            number += 1
            list_id = self.lists[(writer + number) % len(self.lists)]
            todo = f"w{writer}n{number}"
            if number % 4 == 0:  # complete the todo this writer added three commands ago
                body = {"type": "complete_todo", "payload": {"todo_id": f"w{writer}n{number - 3}"}}
                list_id = self.lists[(writer + number - 3) % len(self.lists)]
            else:
                body = {"type": "add_todo", "payload": {"todo_id": todo, "text": f"task {todo}"}}
            body["command_id"] = uuid.uuid4().hex
            sequence = await self._send(writer + number, list_id, body)
            if number % 3 == 0:
                await self._read_your_write(writer + number + 1, list_id, sequence, body)
            await asyncio.sleep(PACE_S)

    async def _send(self, turn: int, list_id: str, body: dict[str, object]) -> int:
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            assert time.monotonic() < deadline, f"command never acknowledged: {body}"
            base = self.gateways[turn % len(self.gateways)]
            try:
                reply = await self._http.post(f"{base}api/commands/todo_list/{list_id}", json=body)
            except httpx.TransportError:
                self.tally.unreachable += 1
                turn += 1
                await asyncio.sleep(0.1)  # back-off before a retry: load shaping
                continue
            if reply.status_code == 200:
                result = reply.json()
                self.tally.acked[str(body["command_id"])] = len(result["events"])
                self.tally.ack_times.append(time.monotonic())
                return int(result["sequence"])
            self.tally.statuses[reply.status_code] += 1
            assert reply.status_code in (503, 504), f"{reply.status_code}: {reply.text}"
            turn += 1
            await asyncio.sleep(0.1)  # back-off before a retry: load shaping

    async def _read_your_write(
        self, turn: int, list_id: str, sequence: int, body: dict[str, object]
    ) -> None:
        base = self.gateways[turn % len(self.gateways)]
        self.tally.queries += 1
        try:
            reply = await self._http.get(
                f"{base}api/todo-lists/{list_id}", params={"min_seq": sequence}
            )
        except httpx.TransportError:
            self.tally.unreachable += 1
            return
        if reply.status_code != 200:
            self.tally.statuses[reply.status_code] += 1
            assert reply.status_code in (503, 504), f"{reply.status_code}: {reply.text}"
            return
        todo = body["payload"]["todo_id"]  # type: ignore[index]
        if todo not in {item["todo_id"] for item in reply.json()["result"]["items"]}:
            self.tally.stale_reads += 1

    async def _follow(self, client: SseClient, turn: int) -> None:
        params = {"topics": client.topics, "client_id": client.client_id}
        while True:
            base = self.gateways[turn % len(self.gateways)]
            headers = {"Last-Event-ID": str(client.position)}
            try:
                async with aconnect_sse(
                    self._http, "GET", f"{base}api/events", params=params, headers=headers
                ) as source:
                    status = source.response.status_code
                    if status != 200:
                        self.tally.statuses[status] += 1
                        assert status == 503, f"the feed answered {status}"
                    async for sse in source.aiter_sse() if status == 200 else _nothing():
                        if sse.event == "snapshot":
                            client.snapshots += 1
                        elif sse.id and sse.data and sse.event not in ("connected", "batch"):
                            event = json.loads(sse.data)
                            client.seen.append((int(sse.id), event["metadata"]["command_id"]))
            except (httpx.TransportError, httpx.HTTPStatusError):
                turn += 1  # its gateway is gone: resume on another
            client.reconnects += 1
            await asyncio.sleep(0.1)  # a reconnect delay, as EventSource's: load shaping


async def _nothing() -> AsyncIterator[ServerSentEvent]:
    return
    yield
