"""Feed test helpers: publish envelopes straight into the stream, read SSE over a socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse
from nats.aio.client import Client

from common import envelope
from common.settings import NatsSettings
from common.subjects import Subjects

SCHEMAS = {"todo_added": 2}


def make(
    aggregate_type: str,
    aggregate_id: str,
    version: int,
    event_type: str,
    payload: dict[str, Any],
    schema: int | None = None,
) -> bytes:
    """The JSON body of an envelope of the given event (new event id, fixed time, a fresh
    command id); `schema` defaults to the current one of `event_type` (`SCHEMAS`, else 1)."""
    return envelope.encode(
        envelope.new_envelope(
            aggregate_type,
            aggregate_id,
            version,
            event_type,
            payload,
            schema=SCHEMAS.get(event_type, 1) if schema is None else schema,
            occurred_at="2026-01-01T00:00:00Z",
        )
    )


def todo(list_id: str, n: int, text: str = "x") -> tuple[str, bytes]:
    """The n-th `todo_added` of a list (version n)."""
    body = make("todo_list", list_id, n, "todo_added", {"todo_id": f"t{n}", "text": text})
    return f"todo_list.{list_id}", body


async def publish(nc: Client, settings: NatsSettings, events: list[tuple[str, bytes]]) -> list[int]:
    """Append `(aggregate_type.id, body)` events; return their stream sequences."""
    js = nc.jetstream(publish_async_max_pending=4000)
    prefix = Subjects(settings.prefix).all_events[:-1]
    futures = [await js.publish_async(prefix + where, body) for where, body in events]
    return [ack.seq for ack in await asyncio.gather(*futures)]


@dataclass
class Message:
    """One SSE message as a test reads it: `event`, `id` (the stream sequence; None without
    `id:`) and `data` (decoded JSON, the raw text when it is not JSON, None when empty)."""

    event: str
    id: int | None
    data: Any


class Reader:
    """One SSE response, read only when asked: a test stops reading by not asking."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.response = source.response
        self._iter = source.aiter_sse().__aiter__()

    async def next(self, timeout: float = 10.0) -> Message:
        """The next message; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            sse: ServerSentEvent = await self._iter.__anext__()
        try:
            data = json.loads(sse.data) if sse.data else None
        except ValueError:  # e.g. a Datastar message: kept as text
            data = sse.data
        return Message(sse.event, int(sse.id) if sse.id else None, data)

    async def until(self, event: str, timeout: float = 10.0) -> list[Message]:
        """Every message up to and including the first `event`."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                seen.append(await self.next(timeout))
                if seen[-1].event == event:
                    return seen

    async def events(self, count: int, timeout: float = 10.0) -> list[Message]:
        """The next `count` event messages, skipping `connected` and bare `retry:` lines."""
        out: list[Message] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                message = await self.next(timeout)
                if message.event != "connected" and message.data is not None:
                    out.append(message)
        return out


@asynccontextmanager
async def feed(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Reader]:
    """Open `GET /api/events` with `params` as query parameters (`topics`, `format`, ...);
    a Reader of the response, which must be 200."""
    async with aconnect_sse(
        client, "GET", "/api/events", params=params, headers=headers or {}
    ) as source:
        assert source.response.status_code == 200, (await source.response.aread()).decode()
        yield Reader(source)
