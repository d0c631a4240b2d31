"""`GET /api/events`: the live feed, one durable consumer per client.

Each message's `id:` is the stream sequence of its (last) event, so `Last-Event-ID`
(header, or `last_event_id` query) resumes exactly after it on any gateway replica. A
position that cannot be resumed gets a snapshot first, then live events.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import msgspec
import structlog
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Stream
from nats.errors import Error as NatsError

from common import envelope
from common.envelope import uuid7
from common.errors import Unavailable
from common.subjects import valid_id
from gateway import datastar, snapshot
from gateway.backend import Backend
from gateway.feed import ClientFeed, Topic, parse_topics
from gateway.wire import comment, frame, retry

log = structlog.get_logger()


class _Meta(msgspec.Struct):
    correlation_id: str = ""


class _Head(msgspec.Struct):
    event_type: str
    metadata: _Meta = msgspec.field(default_factory=_Meta)


_heads = msgspec.json.Decoder(_Head)


def parse_last_event_id(value: str | None) -> int | None:
    """A non-negative integer, or None for absent; -1 marks malformed (snapshot)."""
    if value is None or value == "":
        return None
    digits = value.isascii() and value.isdigit() and len(value) <= 19  # no '²', no 10**5000
    return int(value) if digits else -1


class EventsController(Controller):
    path = "/api/events"
    tags = ["feed"]

    @get(media_type="text/event-stream")
    async def feed(
        self,
        backend: Backend,
        state: State,
        topics: Annotated[
            str | None,
            Parameter(
                description="aggregate types, each with an optional id: todo_list:abc,user_profile"
            ),
        ] = None,
        client_id: Annotated[
            str | None, Parameter(description="names the client's durable consumer")
        ] = None,
        capacity: Annotated[int | None, Parameter(ge=1)] = None,
        last_event_id: Annotated[
            str | None, Parameter(query="last_event_id", description="resume after this sequence")
        ] = None,
        last_event_id_header: Annotated[str | None, Parameter(header="Last-Event-ID")] = None,
        format: Annotated[
            Literal["json", "datastar"],
            Parameter(description="json: envelopes; datastar: server-rendered HTML patches"),
        ] = "json",
    ) -> Stream:
        """Server-Sent Events of the stream, filtered by `topics`."""
        settings = backend.settings
        parsed = parse_topics(topics)
        client = valid_id(client_id, "client_id") if client_id else uuid7()
        size = min(capacity or settings.sse_capacity, settings.sse_max_capacity)
        feed = ClientFeed(
            backend.nc.jetstream(),
            backend.nats.stream,
            backend.subjects,
            client,
            parsed,
            size,
            settings.sse_inactive_s,
        )
        resume = parse_last_event_id(last_event_id_header or last_event_id)
        try:  # a cluster electing a new stream leader answers with errors for a moment
            info = await backend.nc.jetstream().stream_info(backend.nats.stream)
            first, last = info.state.first_seq, info.state.last_seq
            snap: tuple[int, object] | None = None
            if resume is not None and not (max(first, 1) - 1 <= resume <= last):
                snap = await snapshot.take(backend, parsed, last)
                resume = snap[0]
            await feed.open(None if resume is None else resume + 1)
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(
                f"the event stream is unavailable ({type(exc).__name__}); reconnect with "
                "the same Last-Event-ID",
                retry_after=1,
            ) from None
        closing: asyncio.Event = state.closing
        return Stream(
            _events(
                feed,
                client,
                parsed,
                snap,
                closing,
                settings.sse_keepalive_s,
                settings.sse_retry_ms,
                resume or 0,
                format == "datastar",
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _events(
    feed: ClientFeed,
    client: str,
    topics: tuple[Topic, ...],
    snap: tuple[int, object] | None,
    closing: asyncio.Event,
    keepalive_s: float,
    retry_ms: int,
    after: int = 0,
    as_datastar: bool = False,
) -> AsyncIterator[bytes]:
    """The client's frames, each event once and in order.

    A redelivery (its ack was lost when a NATS node went away) of an event already sent is
    dropped; a hole in the consumer's delivery sequence (a delivery went to a pull request
    lost in a reconnect, and AckAll would skip it) ends the stream, so the client resumes
    from its Last-Event-ID on a fresh consumer.
    """
    delivered: int | None = None  # the consumer's delivery sequence of the last message
    closed = asyncio.ensure_future(closing.wait())
    try:
        yield retry(retry_ms)
        hello = {"client_id": client, "consumer": feed.name, "topics": [str(t) for t in topics]}
        yield frame(json.dumps(hello), event="connected")
        if snap is not None and as_datastar:
            yield datastar.render_snapshot(snap[0], snap[1])
        elif snap is not None:
            yield frame(json.dumps(snap[1], default=str), event="snapshot", id=snap[0])
        while not closing.is_set():
            pull = asyncio.ensure_future(feed.pull(feed.capacity, keepalive_s))
            await asyncio.wait({pull, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not pull.done():
                pull.cancel()
                break
            msgs = pull.result()
            if not msgs:
                yield comment("keep-alive")
                continue
            if delivered is not None and msgs[0].metadata.sequence.consumer != delivered + 1:
                break
            delivered = msgs[-1].metadata.sequence.consumer
            correlation_ids = set()
            for msg in msgs:
                if msg.metadata.sequence.stream <= after:
                    continue
                after = msg.metadata.sequence.stream
                head = _heads.decode(msg.data)
                correlation_ids.add(head.metadata.correlation_id)
                if as_datastar:
                    event = envelope.decode(msg.data)
                    yield datastar.render(after, event, msg.metadata.num_pending)
                else:
                    yield frame(msg.data, event=head.event_type, id=after)
            await msgs[-1].ack()  # every byte above was handed to the socket
            log.info(
                "sse_delivered",
                client_id=client,
                events=len(msgs),
                last=after,
                correlation_ids=sorted(correlation_ids)[:100],
            )
        # Shutting down: tell the client to come back soon, spread out so replicas are not stormed.
        yield retry(int(retry_ms * random.uniform(0.5, 1.5)))
    finally:
        closed.cancel()
        await feed.close()
