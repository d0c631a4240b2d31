"""Floor writes of named feeds (`gateway/feed/floors.py`) on a real nats-server: queued as
each consumer's latest floor and written at most `IN_FLIGHT` at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from gateway.feed import floors as floors_module
from gateway.feed.floors import Floors
from gateway.feed.process import Background


@pytest.fixture
async def background() -> AsyncIterator[Background]:
    work = Background()
    yield work
    await work.stop(wait_s=5)


@pytest.fixture
async def floors(nc: Client, nats_settings: NatsSettings, background: Background) -> Floors:
    made = Floors(nc.jetstream(), nats_settings.stream, 1, background.spawn)
    await made.start()
    return made


async def test_thousands_of_floors_put_at_once_are_written_latest_value_with_bounded_requests(
    floors: Floors, background: Background
) -> None:
    names = [f"c{i}" for i in range(2_000)]
    for name in names:  # a reconnect storm's opens
        floors.put(name, 10)
    for name in names[:50]:  # moves before their first write went out: the latest counts
        floors.put(name, 20)
    assert len(background) == 1  # one task writes them all, not a request per put
    await background.stop(wait_s=60)
    assert len(background) == 0
    assert [await floors.get(name) for name in names[:50]] == [20] * 50
    assert {await floors.get(name) for name in names[50:]} == {10}
    assert floors_module.IN_FLIGHT <= 64


async def test_a_direct_write_supersedes_a_queued_floor_of_the_same_consumer(
    floors: Floors, background: Background
) -> None:
    floors.put("ending", 5)  # queued, not written yet (the loop has not turned)
    await floors.write("ending", 9)  # the feed's end, after its last move
    await background.stop(wait_s=30)
    assert await floors.get("ending") == 9
