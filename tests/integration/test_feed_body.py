"""A feed's streaming response on one task (`gateway/feed/body.py`) against the real Litestar and
uvicorn the gateway runs: the body is written on the request's own task and still ends when the
client leaves (heard from the protocol, `direct.watch`); on a protocol without `Lost` hooks it is
Litestar's `Stream` (a second task listens for the disconnect)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, get

from gateway.feed import direct
from gateway.feed.body import FeedStream
from gateway.security.deadlines import header_deadline
from tests.integration.test_direct_socket import _serve
from tests.support import chunked
from tests.support.waiting import eventually


def _app(ended: asyncio.Event, streaming: asyncio.Event) -> Litestar:
    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"hello\n"
            streaming.set()
            await asyncio.Event().wait()  # an idle feed: only its client's leaving ends it
            yield b"never\n"
        finally:
            ended.set()

    @get("/", media_type="text/event-stream")
    async def feed() -> FeedStream:
        return FeedStream(body(), media_type="text/event-stream")

    return Litestar([feed])


async def _tasks_while_streaming(http: Any) -> tuple[int, bool]:
    """(tasks the open response added, whether its body ended when the client left)."""
    ended, streaming = asyncio.Event(), asyncio.Event()
    async with _serve(_app(ended, streaming), http) as port:
        before = len(asyncio.all_tasks())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await chunked.head(reader)
        assert await chunked.chunk(reader) == b"hello\n"
        await asyncio.wait_for(streaming.wait(), 10)
        added = len(asyncio.all_tasks()) - before
        writer.close()
        left = await eventually(lambda: _now(ended.is_set()), bool, timeout=10)
    return added, left


async def _now(value: bool) -> bool:
    return value


async def test_a_feed_body_runs_on_the_request_task_and_ends_when_the_client_leaves() -> None:
    added, left = await _tasks_while_streaming(direct.tracked(header_deadline(5.0)))
    assert added == 1, "one task per open feed: uvicorn's for the request, no listener"
    assert left


async def test_without_the_protocol_hooks_a_feed_body_is_litestars_stream_and_still_ends() -> None:
    added, left = await _tasks_while_streaming(header_deadline(5.0))
    assert added == 2, "Litestar's stream: the request's task and its disconnect listener"
    assert left


@pytest.mark.parametrize("tracked", [True, False])
def test_only_a_tracked_protocol_takes_connection_lost_hooks(tracked: bool) -> None:
    cls = direct.tracked(header_deadline(5.0)) if tracked else header_deadline(5.0)
    protocol = object.__new__(cls)
    assert direct.on_lost(protocol, lambda: None) is tracked
    direct.forget(protocol, lambda: None)
