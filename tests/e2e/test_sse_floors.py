"""A named client returning without `Last-Event-ID` after its consumer was lost (a nats-server
restart removes every in-memory feed consumer; so does an expiry or the loss of its node) continues
after its floor (`gateway/feed/floors.py`): never after the stream's end with a gap (attack15
F2/F3). The loss is made here by deleting the consumer, as the restart does, so the session's
nats-server keeps running."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from common.settings import NatsSettings
from gateway.feed import floors
from tests.support.feeds import Message, Reader, feed, publish, todo
from tests.support.gateways import Http, Start
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
    _, base = start_gateway()
    client, stream = http(base), nats_settings.stream
    async with feed(client, topics="todo_list", client_id="back") as reader:
        consumer = (await reader.until("connected"))[-1].data["consumer"]
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


async def test_a_new_named_client_starts_after_the_streams_end_without_a_snapshot(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    before = await publish(nc, nats_settings, [todo("b", 1)])
    _, base = start_gateway()
    async with feed(http(base), topics="todo_list", client_id="new") as reader:
        hello = (await reader.until("connected"))[-1]
        after = await publish(nc, nats_settings, [todo("b", 2)])
        first = (await reader.events(1))[0]
    assert hello.id == hello.data["position"] == before[-1]
    assert (first.event, first.id) == ("todo_added", after[0])
