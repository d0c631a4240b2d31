"""What must hold after every fault round, checked against the stream itself.

- every command that got a 200 is in the stream exactly once (and no command twice);
- each projector replica's read model equals the fold of the stream;
- each SSE client saw every event of its filter after its start exactly once, in order;
- no process is left behind: the test's children are exactly the cluster's members.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from common import envelope as codec
from common.envelope import Envelope
from ironstar.cluster import Cluster
from tests.faults.workload import SseClient, Tally
from tests.support.waiting import eventually

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """`call()` again while the cluster answers that it is electing or unreachable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (NatsError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # back-off while the cluster elects: load shaping


async def last_sequence(nc: Client, stream: str) -> int:
    info = await retrying(lambda: nc.jetstream().stream_info(stream))
    return int(info.state.last_seq)


async def read_stream(nc: Client, stream: str, after: int = 0) -> list[tuple[int, Envelope]]:
    return await retrying(lambda: _read_stream(nc, stream, after))


async def _read_stream(nc: Client, stream: str, after: int) -> list[tuple[int, Envelope]]:
    """Every event after `after`, in order, through an ephemeral consumer of our own."""
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
        opt_start_seq=after + 1 if after else None,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=30,
    )
    last = (await js.stream_info(stream)).state.last_seq
    sub = await js.pull_subscribe("", stream=stream, config=config)
    events: list[tuple[int, Envelope]] = []
    try:
        while (events[-1][0] if events else after) < last:
            for msg in await sub.fetch(1000, timeout=5):
                events.append((msg.metadata.sequence.stream, codec.decode(msg.data)))
    finally:
        await sub.unsubscribe()
    return events


async def stream_leader(nc: Client, stream: str) -> str:
    """The member name (`nats-2`) of the stream's current leader."""

    async def leader() -> str:
        info = await retrying(lambda: nc.jetstream().stream_info(stream))
        return str(info.cluster.leader or "") if info.cluster is not None else ""

    found = await eventually(leader, bool, timeout=10)
    return found.removeprefix("ironstar-")


def exactly_once(events: list[tuple[int, Envelope]], tally: Tally) -> None:
    per_command = Counter(e.metadata.command_id for _, e in events)
    twice = {command: n for command, n in per_command.items() if n > 1}
    assert not twice, f"commands appended more than once: {twice}"
    lost = [c for c, appended in tally.acked.items() if appended and per_command[c] != 1]
    assert not lost, f"acknowledged commands missing from the stream: {lost[:10]}"


def fold(events: list[tuple[int, Envelope]], list_id: str) -> list[dict[str, Any]]:
    """The todo list the stream says: live items in order of addition."""
    items: dict[str, dict[str, Any]] = {}
    for _, e in events:
        if e.aggregate_type != "todo_list" or e.aggregate_id != list_id:
            continue
        todo = e.payload["todo_id"]
        match e.event_type:
            case "todo_added":
                items[todo] = {"todo_id": todo, "text": e.payload["text"], "completed": False}
            case "todo_renamed":
                items[todo]["text"] = e.payload["text"]
            case "todo_completed" | "todo_reopened":
                items[todo]["completed"] = e.event_type == "todo_completed"
            case "todo_deleted":
                items.pop(todo)
    return list(items.values())


async def replicas_equal_fold(
    cluster: Cluster, gateway: str, events: list[tuple[int, Envelope]], lists: list[str]
) -> None:
    """Ask each projector replica alone (the others stopped) for every list."""
    last = events[-1][0]
    projectors = [m.name for m in cluster.of("projector")]
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        for alone in projectors:
            others = [name for name in projectors if name != alone]
            for name in others:
                await asyncio.to_thread(cluster.stop_member, name)
            for list_id in lists:
                reply = await http.get(f"/api/todo-lists/{list_id}", params={"min_seq": last})
                assert reply.status_code == 200, reply.text
                got = [
                    {k: item[k] for k in ("todo_id", "text", "completed")}
                    for item in reply.json()["result"]["items"]
                ]
                assert got == fold(events, list_id), f"{alone} differs from the stream on {list_id}"
            await asyncio.to_thread(cluster.start_services, others)


def expected_positions(
    clients: list[SseClient], events: list[tuple[int, Envelope]]
) -> dict[str, int]:
    return {c.client_id: max([c.after, *(s for s, _ in matching(c, events))]) for c in clients}


def matching(client: SseClient, events: list[tuple[int, Envelope]]) -> list[tuple[int, str]]:
    kind, _, ident = client.topics.partition(":")
    return [
        (seq, e.metadata.command_id)
        for seq, e in events
        if seq > client.after
        and e.aggregate_type == kind
        and (not ident or e.aggregate_id == ident)
    ]


def sse_exactly_once_in_order(clients: list[SseClient], events: list[tuple[int, Envelope]]) -> None:
    for client in clients:
        assert client.snapshots == 0, f"{client.client_id} was sent a snapshot: resume failed"
        expected = matching(client, events)
        seen = [seq for seq, _ in client.seen]
        twice = sorted(seq for seq, n in Counter(seen).items() if n > 1)
        missing = sorted({seq for seq, _ in expected} - set(seen))
        assert client.seen == expected, (
            f"{client.client_id} ({client.topics}) saw {len(seen)} events, the stream has "
            f"{len(expected)}: twice {twice[:20]}, missing {missing[:20]}, "
            f"in order {seen == sorted(seen)}, reconnects {client.reconnects}"
        )


def ours(cluster: Cluster) -> set[int]:
    """Every process on the machine that belongs to this cluster, member or not."""
    marks = (f"IRONSTAR_NATS_URL={cluster.nats_url}".encode(), str(cluster.data_dir).encode())
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
            zombie = (proc / "stat").read_text().split(") ", 1)[1].startswith("Z")
        except (OSError, IndexError):
            continue
        if not zombie and any(mark in text for mark in marks):
            found.add(int(proc.name))
    return found


def nothing_left_behind(cluster: Cluster) -> None:
    """Each member runs exactly once and no other process of the cluster exists."""
    members = {m.pid for m in cluster.members.values()}
    assert all(m.running() for m in cluster.members.values()), cluster.exited()
    assert ours(cluster) == members, f"processes {ours(cluster)} != members {members}"
