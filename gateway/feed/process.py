"""What every SSE feed of one gateway process shares, created and stopped with the app.

`create_app`'s lifespan builds one `FeedProcess` after NATS is connected and stops it
before NATS drains: the inbox that receives every feed's pulled messages (subscribed at
start), the live tail (subscribed with the first feed: the stream may not exist yet when
the gateway starts), the consumer ledger, the `unbounded` memory budget, and the
background work a closing feed leaves behind (its last ack, deleting its consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.client import Client
from nats.js.api import StreamInfo
from nats.js.client import JetStreamContext

from common.settings import GatewaySettings
from gateway.feed.consumers import Ledger
from gateway.feed.floors import Floors
from gateway.feed.holdings import Holdings
from gateway.feed.inbox import Inbox
from gateway.feed.tail import Tail

log = structlog.get_logger()
STOP_WAIT_S = 2.0  # how long a stopping gateway waits for feeds' last acks to be sent


def _retrieved(flight: asyncio.Future[Any]) -> None:
    """Every waiter may have left: the failure is theirs to report, not the loop's."""
    if not flight.cancelled():
        flight.exception()


class Background:
    """Work a request leaves running after its response ended (a closing feed never
    awaits: a cancelled response may not await again): each task is referenced until it
    is done, and `stop` waits for the rest, then cancels what is still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on the running loop (RuntimeError when there is none)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self, wait_s: float) -> None:
        """Wait up to `wait_s` seconds for the running tasks, then cancel the others."""
        deadline = asyncio.get_running_loop().time() + wait_s
        running: set[asyncio.Task[None]] = set()
        while self._tasks:  # what the tasks spawn meanwhile is waited for too
            left = deadline - asyncio.get_running_loop().time()
            _, running = await asyncio.wait(set(self._tasks), timeout=max(left, 0.0))
            if running:
                break
        for task in running:
            task.cancel()
        if running:
            log.warning("sse_background_cancelled", tasks=len(running))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*running, return_exceptions=True)


@dataclass
class FeedProcess:
    """The process-wide parts of the SSE feed (see the module docstring)."""

    inbox: Inbox
    js: JetStreamContext  # one for every feed (each costs ~2 KiB: issue 15, memory per client)
    ledger: Ledger
    holdings: Holdings
    tail: Tail | None  # None: `sse_live_tail` off, every feed pulls its own consumer
    background: Background
    floors: Floors  # where named clients are when their consumers are lost (`floors.py`)
    opens: int = 0  # feeds being opened right now (`gateway/feed/sse.py`)
    _info: asyncio.Future[StreamInfo] | None = field(default=None, init=False, repr=False)

    async def stream_info(self, stream: str) -> StreamInfo:
        """`stream`'s info, one request at a time for every feed opening meanwhile: a storm of
        returning clients asks once per round trip, not once each (issue 15). It may predate
        the caller by one round trip: a caller that needs a later sequence asks again."""
        flight = self._info
        if flight is None or flight.done():
            flight = self._info = asyncio.ensure_future(self.js.stream_info(stream))
            flight.add_done_callback(_retrieved)
        return await asyncio.shield(flight)

    @classmethod
    async def start(
        cls,
        nc: Client,
        *,
        stream: str,
        all_events: str,
        settings: GatewaySettings,
        closing: asyncio.Event,
        replicas: int = 1,
    ) -> FeedProcess:
        """Subscribe the inbox and bind the floors' bucket (`replicas` as the event stream's); the
        rest starts with the first feed. `stream` is the event stream's name, `all_events` the
        subject filter of every event (the tail's)."""
        inbox = Inbox(nc, closing, settings.sse_max_per_client, settings.sse_max_connections,
                      settings.sse_pull_budget)  # fmt: skip
        await inbox.start()
        js, background = nc.jetstream(), Background()
        floors = Floors(js, stream, replicas, background.spawn)
        await floors.start()
        return cls(
            inbox=inbox,
            js=js,
            ledger=Ledger(settings.sse_max_consumers_per_principal, settings.sse_inactive_s),
            holdings=Holdings(settings.sse_unbounded_budget_bytes),
            tail=Tail(nc, stream, all_events) if settings.sse_live_tail else None,
            background=background,
            floors=floors,
        )

    async def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """After the feeds ended: send what they left behind (bounded by `wait_s` seconds),
        then unsubscribe the tail and the inbox."""
        await self.background.stop(wait_s)
        if self.tail is not None:
            await self.tail.stop()
        await self.inbox.stop()
