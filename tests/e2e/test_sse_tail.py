"""The live tail over real processes: a caught-up feed is served from the gateway's one
read of the stream, leaves it for its own consumer when it falls behind, and comes back
once it has caught up, without a gap or a duplicate (issue 15)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from gateway.feed.topics import Topic, consumer_name
from tests.support import chunked
from tests.support.feeds import Reader, feed, make, publish
from tests.support.gateways import Http, Start, metric
from tests.support.waiting import eventually
from tests.support.whatwg_sse import parse

pytestmark = pytest.mark.e2e


async def _ids(reader: Reader, count: int) -> list[int]:
    return [m.id for m in await reader.events(count, timeout=30) if m.id is not None]


async def test_a_feed_that_falls_behind_catches_up_from_its_consumer_and_rejoins_the_tail(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_send_buffer_bytes=16384)
    probe, list_id = http(base), f"t{uuid.uuid4().hex[:8]}"
    padding = {"text": "z" * 200, "note": "z" * 800}  # ~1 KB: the socket fills quickly

    def events(first: int, count: int) -> list[tuple[str, bytes]]:
        return [
            (f"todo_list.{list_id}", make("todo_list", list_id, n, "todo_added",
                                          {"todo_id": f"t{n}", **padding}))
            for n in range(first, first + count)
        ]  # fmt: skip

    async with feed(http(base, receive_buffer=16384), topics=f"todo_list:{list_id}",
                    capacity="16", client_id="behind") as reader:  # fmt: skip
        await reader.until("connected")
        await eventually(lambda: metric(probe, "sse_tail_joined_total"), lambda n: n >= 1)
        (first,) = await publish(nc, nats_settings, events(1, 1))
        assert await _ids(reader, 1) == [first]  # live, from the tail
        backlog = await publish(nc, nats_settings, events(2, 600))  # not read meanwhile
        name = consumer_name("behind", (Topic("todo_list", list_id),))
        info = await nc.jetstream().consumer_info(nats_settings.stream, name)
        assert info.num_pending > 0  # what the gateway does not hold waits in the stream
        # read before looking: the feed's loop may be blocked in a write until the client
        # reads (the tail's last frames of a turn found the socket full), and it counts
        # `sse_tail_left_total` once it goes back to its consumer
        assert await _ids(reader, len(backlog)) == backlog  # every one, once, in order
        assert await metric(probe, "sse_tail_left_total") >= 1
        # the rejoin waits for the feed's loop, which a loaded machine may keep for a while
        await eventually(lambda: metric(probe, "sse_tail_joined_total"), lambda n: n >= 2, 30)
        later = await publish(nc, nats_settings, events(602, 3))
        assert await _ids(reader, 3) == later


async def test_a_feed_whose_catching_up_ends_on_a_full_pull_still_rejoins_the_tail(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    """The server ends a filled pull request without a status, so no `404` says the feed
    caught up: its last delivery's `pending` (0) does, and the feed rejoins the tail
    without waiting for a next event."""
    _, base = start_gateway()
    probe, list_id = http(base), f"t{uuid.uuid4().hex[:8]}"
    padding = {"text": "z" * 200, "note": "z" * 800}  # ~1 KB: the tail's ring keeps ~450
    events = [
        (f"todo_list.{list_id}", make("todo_list", list_id, n, "todo_added",
                                      {"todo_id": f"t{n}", **padding}))
        for n in range(1, 802)
    ]  # fmt: skip
    sequences = await publish(nc, nats_settings, events)
    headers = {"Last-Event-ID": str(sequences[0])}  # 800 behind: 50 full pulls of 16
    async with feed(http(base), headers, topics=f"todo_list:{list_id}", capacity="16",
                    client_id="full") as reader:  # fmt: skip
        await reader.until("connected")
        assert await _ids(reader, 800) == sequences[1:]
        await eventually(lambda: metric(probe, "sse_tail_joined_total"), lambda n: n >= 1, 10)
        later = await publish(nc, nats_settings, [(f"todo_list.{list_id}", make(
            "todo_list", list_id, 802, "todo_added", {"todo_id": "t802"}))])  # fmt: skip
        assert await _ids(reader, 1) == later


async def test_a_returning_client_a_few_events_behind_joins_a_fresh_gateways_tail_without_pulling(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    list_id = f"t{uuid.uuid4().hex[:8]}"
    events = [
        (f"todo_list.{list_id}", make("todo_list", list_id, n, "todo_added", {"todo_id": f"t{n}"}))
        for n in range(1, 41)
    ]
    sequences = await publish(nc, nats_settings, events)
    _, base = start_gateway()  # its tail starts with the stream's last events (a restart)
    headers = {"Last-Event-ID": str(sequences[9])}
    async with feed(http(base), headers, topics=f"todo_list:{list_id}", client_id="back") as r:
        await r.until("connected")
        assert await _ids(r, 30) == sequences[10:]  # every one missed, once, in order
        name = consumer_name("back", (Topic("todo_list", list_id),))
        info = await nc.jetstream().consumer_info(nats_settings.stream, name)
        # served from the tail: its consumer delivered at most the joined feed's one-event touch
        assert info.delivered.consumer_seq <= 1, info.delivered


async def test_the_tails_own_writes_are_exact_http_chunks_and_a_stopping_gateway_still_ends_them(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    """A caught-up feed's events are written by the tail itself, below the ASGI chain
    (`gateway/feed/direct.py`): read over a raw HTTP/1.1 socket, every chunk is framed
    exactly, the security headers came with the response's start, the events arrive once
    and in order, SIGTERM still ends the response (a jittered `retry:`, the last chunk), and
    the feed's consumer was moved to just after what was written."""
    gateway, base = start_gateway()
    probe, list_id = http(base), f"t{uuid.uuid4().hex[:8]}"
    before = await metric(probe, "sse_direct_writes_total")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
    writer.write(f"GET /api/events?topics=todo_list:{list_id}&client_id=raw HTTP/1.1\r\n"
                 "host: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n".encode())  # fmt: skip
    head = (await chunked.head(reader)).lower()
    assert b"x-content-type-options: nosniff" in head and b"text/event-stream" in head
    raw = b""
    while b"event: connected" not in raw:
        raw += await chunked.chunk(reader)
    await eventually(lambda: metric(probe, "sse_tail_joined_total"), lambda n: n >= 1)
    events = [
        (f"todo_list.{list_id}", make("todo_list", list_id, n, "todo_added",
                                      {"todo_id": f"t{n}", "text": "x"}))
        for n in range(1, 21)
    ]  # fmt: skip
    sequences = []
    for one in events:  # one at a time: each is a write of its own
        sequences += await publish(nc, nats_settings, [one])
    while raw.count(b"event: todo_added") < len(events):
        raw += await asyncio.wait_for(chunked.chunk(reader), 10)
    assert await metric(probe, "sse_direct_writes_total") >= before + len(events)
    gateway.stop()
    rest = await asyncio.wait_for(chunked.body(reader), 10)  # ends with the last chunk
    parsed = parse(raw + b"".join(rest))
    assert [int(e.last_event_id) for e in parsed.events if e.type == "todo_added"] == sequences
    assert parsed.retries[-1] > 0  # the shutdown's come-back hint
    writer.close()
    # the consumer followed what the tail wrote: a client returning by id continues after it
    name = consumer_name("raw", (Topic("todo_list", list_id),))

    async def cursor() -> int:  # the consumer's next delivery minus one
        info = await nc.jetstream().consumer_info(nats_settings.stream, name)
        return int(info.delivered.stream_seq)

    await eventually(cursor, lambda seq: seq == sequences[-1], timeout=5)
