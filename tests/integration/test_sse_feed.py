"""A client feed against a real JetStream: credit-paced pulls through the shared inbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from common.settings import NatsSettings
from common.subjects import Subjects
from gateway.feed.client import ClientFeed
from gateway.feed.inbox import Inbox
from gateway.feed.topics import Topic
from tests.support.feeds import publish, todo
from tests.support.waiting import eventually


def _feed(
    nc: Client, box: Inbox, settings: NatsSettings, client: str, topic: Topic, capacity: int = 8
) -> ClientFeed:
    return ClientFeed(
        nc.jetstream(),
        box,
        stream=settings.stream,
        subjects=Subjects(settings.prefix),
        client_id=client,
        topics=(topic,),
        capacity=capacity,
        inactive_s=60,
    )


async def test_a_feed_holds_at_most_its_capacity_while_the_backlog_waits_in_the_stream(
    nc: Client, nats_settings: NatsSettings
) -> None:
    box = Inbox(nc, asyncio.Event(), per_client=8, total=100, pull_budget=1000)
    await box.start()
    feed = _feed(nc, box, nats_settings, "slow", Topic("todo_list"))
    await feed.open(1, 0)
    try:
        sequences = await publish(nc, nats_settings, [todo("a", n) for n in range(1, 101)])
        await feed.ask(64, 5.0)  # more credit than capacity: max_ack_pending still caps it

        async def held() -> tuple[int, int]:
            info = await nc.jetstream().consumer_info(nats_settings.stream, feed.name)
            return len(feed.buffer), info.num_pending

        assert await eventually(held, lambda h: h == (8, 92))
        taken = feed.take(100)
        assert [m.metadata.sequence.stream for m in taken] == sequences[:8]
        await feed.ack(taken[-1].reply)  # written: the next 8 may come
        assert await eventually(held, lambda h: h == (8, 84))
    finally:
        feed.close()
        await box.stop()


async def test_one_inbox_routes_each_consumers_deliveries_to_its_own_feed(
    nc: Client, nats_settings: NatsSettings
) -> None:
    box = Inbox(nc, asyncio.Event(), per_client=8, total=100, pull_budget=1000)
    await box.start()
    feeds = [_feed(nc, box, nats_settings, f"c{n}", Topic("todo_list", f"l{n}")) for n in (1, 2)]
    for feed in feeds:
        await feed.open(1, 0)
        await feed.ask(8, 5.0)
    try:
        ones = await publish(nc, nats_settings, [todo("l1", n) for n in (1, 2, 3)])
        twos = await publish(nc, nats_settings, [todo("l2", n) for n in (1, 2)])

        async def buffered() -> list[int]:
            return [len(feed.buffer) for feed in feeds]

        await eventually(buffered, lambda sizes: sizes == [3, 2])
        got = [[m.metadata.sequence.stream for m in feed.take(8)] for feed in feeds]
        assert got == [ones, twos]
    finally:
        for feed in feeds:
            feed.close()
        await box.stop()


@contextlib.asynccontextmanager
async def _inbox(nc: Client) -> AsyncIterator[Inbox]:
    box = Inbox(nc, asyncio.Event(), per_client=8, total=100, pull_budget=1000)
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


async def _pulled(feed: ClientFeed, count: int) -> list[int]:
    """Ask for up to 8 events, wait until `count` arrived; their stream sequences."""
    await feed.ask(8, 5.0)
    await eventually(lambda: _now(len(feed.buffer)), lambda n: n == count)
    return [m.metadata.sequence.stream for m in feed.take(8)]


async def _now(value: int) -> int:
    return value


async def _api_calls(nc: Client) -> tuple[list[str], Any]:
    """The consumer API requests (`RESET`, `INFO`, `DURABLE` create, ...) made from now on
    (nats-server lets any client of the account listen to them)."""
    seen: list[str] = []

    async def heard(msg: Msg) -> None:
        seen.append(msg.subject.split(".")[3])

    return seen, await nc.subscribe("$JS.API.CONSUMER.*.>", cb=heard)


async def test_a_client_returning_from_a_killed_gateway_gets_at_once_what_it_held_unacked(
    nc: Client, nats_settings: NatsSettings
) -> None:
    dead = await nats.connect(nats_settings.url)  # the gateway that will be killed
    async with _inbox(dead) as gone:
        first = _feed(dead, gone, nats_settings, "back", Topic("todo_list"))
        await first.open(1, 0)
        sequences = await publish(nc, nats_settings, [todo("r", n) for n in range(1, 6)])
        await first.ask(8, 30.0)
        assert await eventually(lambda: _now(len(first.buffer)), lambda n: n == 5)
        await dead.close()  # delivered, never acked, a pull request still open: the kill
    async with _inbox(nc) as box:
        back = _feed(nc, box, nats_settings, "back", Topic("todo_list"))
        assert await back.open(sequences[2], sequences[-1]) == sequences[1]  # had up to 2nd
        assert await _pulled(back, 3) == sequences[2:]
        back.close()


async def test_a_returning_client_of_another_capacity_gets_a_consumer_of_its_own_bound(
    nc: Client, nats_settings: NatsSettings
) -> None:
    async with _inbox(nc) as box:
        first = _feed(nc, box, nats_settings, "wider", Topic("todo_list"))
        await first.open(1, 0)
        first.close()
        sequences = await publish(nc, nats_settings, [todo("w", n) for n in (1, 2)])
        back = _feed(nc, box, nats_settings, "wider", Topic("todo_list"), capacity=32)
        assert await back.open(sequences[1], sequences[-1]) == sequences[0]
        info = await nc.jetstream().consumer_info(nats_settings.stream, back.name)
        assert info.config.max_ack_pending == 32
        assert info.num_pending == 1  # the second event only
        back.close()


@pytest.mark.parametrize("existing", [True, False], ids=["consumer-exists", "consumer-gone"])
async def test_in_a_storm_a_returning_client_resumes_exactly_after_one_reset_or_on_a_new_consumer(
    existing: bool, nc: Client, nats_settings: NatsSettings
) -> None:
    async with _inbox(nc) as box:
        if existing:
            first = _feed(nc, box, nats_settings, "storm", Topic("todo_list"))
            await first.open(1, 0)
            first.close()
        sequences = await publish(nc, nats_settings, [todo("s", n) for n in range(1, 5)])
        seen, sub = await _api_calls(nc)
        created: list[bool] = []
        back = _feed(nc, box, nats_settings, "storm", Topic("todo_list"))
        opened = await back.open(sequences[1], sequences[-1], lambda: created.append(True),
                                 likely=True)  # fmt: skip
        assert opened == sequences[0]
        await nc.flush()
        # no info request first; a reset of a missing consumer is never answered: after
        # RESET_FIRST_S its info says to create it, counted against the stream's headroom
        assert seen == (["RESET"] if existing else ["RESET", "INFO", "DURABLE"])
        assert created == ([] if existing else [True])
        assert await _pulled(back, 3) == sequences[1:]
        await sub.unsubscribe()
        back.close()


@pytest.mark.parametrize("likely", [False, True], ids=["open", "storm-open"])
async def test_a_returning_client_resuming_before_its_consumers_start_gets_it_replaced_from_there(
    likely: bool, nc: Client, nats_settings: NatsSettings
) -> None:
    """attack15 F1: a reset below the consumer's start sequence is refused by JetStream
    (10204); the consumer is replaced from the resume point instead of a 400."""
    async with _inbox(nc) as box:
        sequences = await publish(nc, nats_settings, [todo("b", n) for n in range(1, 5)])
        first = _feed(nc, box, nats_settings, "below", Topic("todo_list"))
        assert await first.open(None, sequences[-1]) == sequences[-1]  # starts after them
        first.close()
        back = _feed(nc, box, nats_settings, "below", Topic("todo_list"))
        assert await back.open(sequences[1], sequences[-1], likely=likely) == sequences[0]
        assert await _pulled(back, 3) == sequences[1:]
        back.close()
