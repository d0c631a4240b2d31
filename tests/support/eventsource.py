"""A client that reconnects as a browser's EventSource does (WHATWG HTML, server-sent events).

- Each connection sends `Accept: text/event-stream` and, once an `id:` was seen,
  `Last-Event-ID` with the last one.
- A response that is not `200 text/event-stream` fails the connection for good (the rule
  that makes a proxy's bare 502 fatal to browsers): `fatal` says why, nothing reconnects.
- A stream that ends or breaks is reopened after the reconnection time, which `retry:`
  sets (here scaled by `speed` to keep tests short).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse


@dataclass
class EventSourceClient:
    """A browser-like EventSource on `url` (see the module docstring); `events` are what
    it received, `connections` its 200 text/event-stream responses, `fatal` why it gave up."""

    url: str
    verify: ssl.SSLContext | bool = True
    speed: float = 1.0  # multiplies the server's `retry:`
    retry_ms: int = 3000  # the WHATWG default reconnection time
    last_event_id: str = ""
    events: list[ServerSentEvent] = field(default_factory=list)
    connections: int = 0  # responses 200 text/event-stream
    fatal: str | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> EventSourceClient:
        """Connect in a background task of the running loop (reconnecting until `stop`)."""
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        timeout = httpx.Timeout(10, read=60)
        async with httpx.AsyncClient(verify=self.verify, timeout=timeout) as http:
            while self.fatal is None:
                with contextlib.suppress(httpx.TransportError):
                    await self._connect(http)
                await asyncio.sleep(self.retry_ms * self.speed / 1000)  # EventSource's retry delay

    async def _connect(self, http: httpx.AsyncClient) -> None:
        headers = {"Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        async with aconnect_sse(http, "GET", self.url, headers=headers) as source:
            reply = source.response
            kind = reply.headers.get("content-type", "")
            if reply.status_code != 200 or not kind.startswith("text/event-stream"):
                self.fatal = f"{reply.status_code} {kind}: {(await reply.aread())[:200]!r}"
                return
            self.connections += 1
            async for event in source.aiter_sse():
                if event.retry is not None:
                    self.retry_ms = event.retry
                if event.id:
                    self.last_event_id = event.id
                if event.data or event.event != "message":
                    self.events.append(event)

    async def stop(self) -> None:
        """Cancel the client and wait until it has closed its connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
