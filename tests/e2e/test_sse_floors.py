"""A named client returning without `Last-Event-ID` after its consumer was lost (a nats-server
restart removes every in-memory feed consumer; so does an expiry or the loss of its node) continues
after its floor (`gateway/feed/floors.py`): never after the stream's end with a gap (attack15
F2/F3). The loss is made here by deleting the consumer, as the restart does, so the session's
nats-server keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket

import httpx
import pytest
from httpx_sse import EventSource
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from common.settings import NatsSettings
from gateway.feed import floors
from gateway.feed.delivery import LazyAcks
from tests.support import chunked
from tests.support.feeds import Message, Reader, feed, make, publish, todo
from tests.support.gateways import Http, Start, metric
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def _floor(nc: Client, stream: str, consumer: str) -> int | None:
    try:
        kv = await nc.jetstream().key_value(floors.bucket(stream))
        return int((await kv.get(consumer)).value or b"0")
    except KeyNotFoundError:
        return None


async def _until_id(reader: Reader, last: int) -> list[Message]:
    """Every message up to the event `last`."""
    seen: list[Message] = []
    while not seen or seen[-1].id != last or seen[-1].event != "todo_added":
        seen.append(await reader.next())
    return seen


async def test_a_named_client_whose_consumer_was_lost_continues_after_what_it_was_written(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    before = await publish(nc, nats_settings, [todo("b", 1)])
    _, base = start_gateway()
    client, stream = http(base), nats_settings.stream
    async with feed(client, topics="todo_list", client_id="back") as reader:
        first = await reader.until("connected")  # a new client: after the stream's end
        assert [(m.event, m.id) for m in first if m.data] == [("connected", before[-1])]
        consumer = first[-1].data["consumer"]
        written = await publish(nc, nats_settings, [todo("a", n) for n in (1, 2, 3)])
        assert [m.id for m in await reader.events(3)] == written
    # the feed ended (the client left): its floor is what it was written
    assert await eventually(lambda: _floor(nc, stream, consumer), lambda f: f == written[-1])
    await nc.jetstream().delete_consumer(stream, consumer)  # what a nats-server restart does
    missed = await publish(nc, nats_settings, [todo("a", n) for n in (4, 5)])
    async with feed(client, topics="todo_list", client_id="back") as reader:
        seen = await _until_id(reader, missed[-1])
    assert [m.data["position"] for m in seen if m.event == "connected"] == [written[-1]]
    assert [m.id for m in seen if m.event == "todo_added"] == missed
    assert "snapshot" not in {m.event for m in seen}


async def test_after_a_kill_9_a_lost_consumers_client_may_see_events_again_but_never_misses_one(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    first, base = start_gateway()
    client, stream = http(base), nats_settings.stream
    got: list[int] = []
    with contextlib.suppress(httpx.HTTPError):
        async with feed(client, topics="todo_list", client_id="crash") as reader:
            consumer = (await reader.until("connected"))[-1].data["consumer"]
            await eventually(lambda: _floor(nc, stream, consumer), lambda f: f is not None)
            written = await publish(nc, nats_settings, [todo("a", n) for n in (1, 2, 3)])
            got += [m.id for m in await reader.events(3) if m.id is not None]
            first.kill()  # SIGKILL: no last move, no last floor
            await reader.next()
    await nc.jetstream().delete_consumer(stream, consumer)
    missed = await publish(nc, nats_settings, [todo("a", n) for n in (4, 5)])
    _, base2 = start_gateway()
    async with feed(http(base2), topics="todo_list", client_id="crash") as reader:
        seen = await _until_id(reader, missed[-1])
    again = [m.id for m in seen if m.event == "todo_added"]
    assert got == written and again[-len(missed) :] == missed  # nothing after the floor skipped
    assert set(again) <= set(written + missed)
    assert again == sorted(again) and len(again) == len(set(again))


async def _raw_feed(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client with a 4 KiB receive buffer that has read the response's head only."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)  # reads then stop
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await chunked.head(reader)
    return reader, writer


async def test_a_consumer_is_never_moved_past_bytes_still_held_in_the_gateways_transport(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    gateway, base = start_gateway(sse_send_buffer_bytes=4096)
    port = int(base.rpartition(":")[2])
    path = "/api/events?topics=todo_list:held&client_id=held&capacity=1000"
    reader, writer = await _raw_feed(port, path)
    await eventually(lambda: metric(http(base), "sse_tail_joined_total"), lambda n: n >= 1)
    padding = {"text": "z" * 200, "note": "z" * 800}  # ~1.2 KB frames
    events = [
        (
            "todo_list.held",
            make("todo_list", "held", n, "todo_added", {"todo_id": f"t{n}", **padding}),
        )
        for n in range(1, 41)
    ]
    # ~55 KB written below the ASGI chain to a client that reads nothing: more than the two
    # kernels' buffers hold, less than the transport's high-water mark (so it is never paused)
    published = await publish(nc, nats_settings, events)
    await eventually(lambda: metric(http(base), "sse_direct_writes_total"), lambda n: n >= 40)
    # the lazy move (`LazyAcks.LIVE_EVERY_S`) comes due: past what the client's host has
    js = nc.jetstream()
    (name,) = [c.name for c in await js.consumers_info(nats_settings.stream)
               if c.name.startswith("sse_held_")]  # fmt: skip

    async def floor() -> int:
        return int((await js.consumer_info(nats_settings.stream, name)).ack_floor.stream_seq)

    await eventually(floor, lambda seq: seq >= published[0], timeout=LazyAcks.LIVE_EVERY_S + 5)
    gateway.kill()  # SIGKILL: what the transport held is lost, what the kernel held is sent
    got = [m.id for m in await _frames(reader) if m.event == "todo_added"]
    writer.close()
    assert len(got) < len(published)  # some frames died with the process
    _, base2 = start_gateway()
    async with feed(http(base2), topics="todo_list:held", client_id="held") as again:
        after = [m.id for m in await _until_id(again, published[-1]) if m.event == "todo_added"]
    assert after and after[0] <= (got[-1] + 1 if got else published[0])  # no gap, maybe again
    assert sorted(set(got + after)) == published


async def _frames(reader: asyncio.StreamReader) -> list[Message]:
    """Every whole SSE message the client can still read, to the connection's end (a chunk
    cut short still brings the messages it carried whole: the trail places the consumer
    within a write, verify7b V7b-1)."""
    raw = b""
    with contextlib.suppress(ConnectionError):
        while piece := await reader.read(1 << 16):
            raw += piece
    data = chunked.streamed(raw)
    out = []
    for block in data.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "id" in fields:
            out.append(Message(fields.get("event", "message"), int(fields["id"]), None))
    return out


def _ids(data: bytes) -> list[int]:
    """The ids of the whole `todo_added` messages in `data` (the start of a feed's body)."""
    blocks = data.decode(errors="replace").split("\n\n")[:-1]
    return [
        int(line[4:])
        for block in blocks
        if "event: todo_added" in block
        for line in block.splitlines()
        if line.startswith("id: ")
    ]


async def _stalled(
    nc: Client,
    nats_settings: NatsSettings,
    start_gateway: Start,
    http: Http,
    name: str,
    query: str = "",
) -> tuple[httpx.AsyncClient, asyncio.StreamReader, asyncio.StreamWriter, list[int]]:
    """On a new gateway (its client returned first), a raw named client `name` (topic
    `todo_list:<name>`, more parameters in `query`) that reads nothing after the head, and 200
    ~1.2 KB events (~240 KB) written to it: most of them out of the gateway's process into the
    kernel's queues (written below the ASGI chain, or by the feed's loop for `unbounded`)."""
    _, base = start_gateway()
    port, probe = int(base.rpartition(":")[2]), http(base)
    path = f"/api/events?topics=todo_list:{name}&client_id={name}{query}"
    reader, writer = await _raw_feed(port, path)
    await eventually(lambda: metric(probe, "sse_tail_joined_total"), lambda n: n >= 1)
    padding = {"text": "z" * 200, "note": "z" * 800}
    frames = [{"todo_id": f"t{n}", **padding} for n in range(1, 201)]
    published = await publish(nc, nats_settings, [
        (f"todo_list.{name}", make("todo_list", name, n, "todo_added", data))
        for n, data in enumerate(frames, 1)
    ])  # fmt: skip
    if "unbounded" in query:  # its loop writes (a blocked write stops it: at least the first)
        await eventually(lambda: metric(probe, "sse_emit_duration_seconds_count"), bool)
    else:
        await eventually(lambda: metric(probe, "sse_direct_writes_total"), lambda n: n >= 40)
    return probe, reader, writer, published


@pytest.mark.parametrize("policy", ["block", "unbounded"])
async def test_a_slow_client_that_reloads_by_client_id_misses_nothing_the_kernel_still_held(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http, policy: str
) -> None:
    # `unbounded` acks its consumer as it writes (its flow), yet returns to what the client's
    # host acknowledged (verify6 V2: 590 of 600 lost before)
    name = f"reload-{policy}"
    probe, reader, writer, published = await _stalled(
        nc, nats_settings, start_gateway, http, name, f"&policy={policy}"
    )
    data = b""
    while len(_ids(data)) < 3:  # the client reads a little, then reloads (its connection ends)
        data += await asyncio.wait_for(chunked.chunk(reader), 10)
    got = _ids(data)
    writer.transport.abort()
    await eventually(lambda: metric(probe, "sse_connections"), lambda n: n == 0)
    async with feed(probe, topics=f"todo_list:{name}", client_id=name, policy=policy) as again:
        after = [m.id for m in await _until_id(again, published[-1]) if m.event == "todo_added"]
    # it continues after what its host acknowledged (verify6 V4: before, at its very first
    # position, its consumer unmoved while it stalled), losing at most what the client itself
    # held unread (its 8 KiB receive buffer and its reader's 8 KiB: ~13 frames, limit (4)) ...
    assert got[0] < after[0] <= got[-1] + 1 + 16
    # ... and nothing the gateway or its kernel still held
    assert after == published[published.index(after[0]) :]


async def test_a_stopping_gateway_moves_a_named_consumer_before_the_frame_that_ends_its_feed(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    gateway, base = start_gateway()
    async with feed(http(base), topics="todo_list", client_id="stop") as reader:
        consumer = (await reader.until("connected"))[-1].data["consumer"]
        await eventually(lambda: metric(http(base), "sse_tail_joined_total"), lambda n: n >= 1)
        written = await publish(nc, nats_settings, [todo("s", n) for n in (1, 2, 3)])
        assert [m.id for m in await reader.events(3)] == written
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        ending = await reader.next()  # the bare `retry:` that invites the client back
        # read at once: a client back now, on any gateway, finds its consumer here
        floor = await _floor(nc, nats_settings.stream, consumer)
        info = await nc.jetstream().consumer_info(nats_settings.stream, consumer)
    assert (ending.event, ending.data) == ("message", None)
    assert floor == written[-1]
    assert info.delivered.stream_seq == written[-1]


async def test_a_named_clients_new_connection_takes_over_from_its_stuck_one_without_a_gap(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    probe, reader, writer, published = await _stalled(
        nc, nats_settings, start_gateway, http, "stuck"
    )
    async with feed(probe, topics="todo_list:stuck", client_id="stuck") as again:
        after = [m.id for m in await _until_id(again, published[-1]) if m.event == "todo_added"]
    # the stuck one's client read nothing: everything after what its host acknowledged (its
    # 8 KiB receive buffer and its reader's 8 KiB: ~13 frames, lost as the cut resets it),
    # in order, no gap after it
    assert after[0] <= published[0] + 16 and after == published[published.index(after[0]) :]
    # the older connection was ended: its reader reaches the end (after what the kernel held)
    old = [m.id for m in await asyncio.wait_for(_frames(reader), 10) if m.event == "todo_added"]
    writer.close()
    assert old == published[: len(old)]


async def test_connections_of_one_client_arriving_at_once_leave_one_feeding_and_refuse_the_rest(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    # verify6 V3: the losers of such a race got 429 "the older one did not end in time" within
    # milliseconds (no wait had happened); now the newest arrival takes over and each one it
    # superseded while taking over answers 409, without `Retry-After` (a retry would cut it)
    _, base = start_gateway()
    client = http(base)
    params = {"topics": "todo_list:race", "client_id": "race"}
    async with feed(client, **params) as older:
        await older.until("connected")
        first = await publish(nc, nats_settings, [todo("race", 1)])
        assert [m.id for m in await older.events(1)] == first
        requests = [client.build_request("GET", "/api/events", params=params) for _ in range(3)]
        answers = await asyncio.gather(*(client.send(r, stream=True) for r in requests))
        try:
            statuses = sorted(a.status_code for a in answers)
            refused = [a for a in answers if a.status_code != 200]
            for answer in refused:
                body = (await answer.aread()).decode()
                assert "newer connection" in body and "retry-after" not in answer.headers
            assert statuses == [200, 409, 409], statuses
            newest = Reader(EventSource(next(a for a in answers if a.status_code == 200)))
            connected = (await newest.until("connected"))[-1]
            assert connected.data["position"] == first[-1]  # exactly after the cut one
            more = await publish(nc, nats_settings, [todo("race", 2)])
            assert [m.id for m in await newest.events(1)] == more
        finally:
            for answer in answers:
                await answer.aclose()
