"""The SSE feed's process-wide parts live as long as the app: started by its lifespan,
before any request, and stopped with it (`gateway/feed/process.py`)."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import AsyncTestClient

from common.settings import GatewaySettings, NatsSettings
from gateway.app import create_app
from gateway.feed.process import Background, FeedProcess


# built in this process, the app's routes raise Litestar 2.25's deprecation warnings
# (`Parameter(header=...)`, inferred dependencies): not this test's subject
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_apps_lifespan_subscribes_the_sse_inbox_before_any_feed_and_unsubscribes_it(
    nats_settings: NatsSettings,
) -> None:
    app = create_app(nats_settings, GatewaySettings())
    async with app.lifespan():
        feeds: FeedProcess = app.state.feeds
        assert feeds.inbox.started  # no request has come: it is the lifespan's
        assert feeds.tail is not None and not feeds.tail.ready  # subscribed with a feed
    assert not feeds.inbox.started


async def test_a_stopping_process_waits_for_the_work_feeds_left_behind() -> None:
    background, went_out = Background(), asyncio.Event()
    release = asyncio.Event()

    async def last_ack() -> None:
        await release.wait()
        went_out.set()

    background.spawn(last_ack())
    assert len(background) == 1  # referenced until done
    stopping = asyncio.create_task(background.stop(wait_s=30))
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert went_out.is_set() and len(background) == 0


async def test_work_that_outlives_the_stop_bound_is_cancelled_not_left_running() -> None:
    background, never = Background(), asyncio.Event()
    background.spawn(never.wait())  # type: ignore[arg-type]
    await asyncio.wait_for(background.stop(wait_s=0.05), 10)
    assert len(background) == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_gateway_that_began_to_stop_refuses_new_feeds_with_503_and_retry_after(
    nats_settings: NatsSettings,
) -> None:
    app = create_app(nats_settings, GatewaySettings())
    async with AsyncTestClient(app) as client:
        app.state.closing.set()  # what `serve` does first when the gateway is told to stop
        answer = await client.get("/api/events", params={"client_id": "late"})
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "shutting down" in answer.text
        assert app.state.feeds.ledger.held("127.0.0.1") == 0  # nothing was taken
