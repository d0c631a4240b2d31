"""The seed's original fan-out, as the ceiling of `ironstar bench sse`: one JetStream
subscription in the process, fanned out to a bounded asyncio queue per SSE client.

It holds no per-client consumer, gives no resume and drops for a slow client (its queue
is full); it is what the per-client consumers are measured against.
Run: `python -m ironstar.benchmarks.sse_baseline <nats-url> <prefix> <port> <ready-file>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import uvicorn
from litestar import Litestar, get
from litestar.response import Stream
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from common.subjects import Subjects
from gateway.feed.wire import frame, retry


def create_app(url: str, prefix: str) -> Litestar:
    """The baseline's Litestar app: one JetStream subscription on `prefix`'s events at NATS `url`,
    fanned out to a bounded queue per client of `GET /events?topics=`."""
    subjects = Subjects(prefix)
    clients: dict[str, set[asyncio.Queue[tuple[int, bytes]]]] = {}

    async def fan(msg: Msg) -> None:
        item = (msg.metadata.sequence.stream, msg.data)
        for queue in clients.get(msg.subject, ()):
            with contextlib.suppress(asyncio.QueueFull):  # the seed's answer to a slow client
                queue.put_nowait(item)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.subscribe(
            subjects.all_events, cb=fan, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        try:
            yield
        finally:
            await nc.close()

    async def events(subject: str) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=256)
        clients.setdefault(subject, set()).add(queue)
        try:
            yield retry(2000)
            while True:
                items = [await queue.get()]
                while not queue.empty() and len(items) < 256:
                    items.append(queue.get_nowait())
                yield b"".join(frame(data, event="todo_added", id=seq) for seq, data in items)
        finally:
            clients[subject].discard(queue)

    @get("/api/events", media_type="text/event-stream")
    async def feed(topics: str) -> Stream:
        kind, _, ident = topics.partition(":")
        return Stream(events(subjects.events(kind, ident)), media_type="text/event-stream")

    return Litestar([feed], lifespan=[lifespan])


def main() -> None:
    """`python -m ironstar.benchmarks.sse_baseline <nats-url> <prefix> <port> <ready-file>`: serve
    until SIGTERM, writing the ready file once it listens."""
    url, prefix, port, ready = sys.argv[1:5]
    config = uvicorn.Config(
        create_app(url, prefix), host="127.0.0.1", port=int(port), log_config=None,
        access_log=False, timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)
        Path(ready).write_text("ready")  # noqa: ASYNC240 - once, a few bytes
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
