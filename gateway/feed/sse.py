"""`GET /api/events`: the live feed, one durable consumer per client.

Each message's `id:` is the stream sequence of its (last) event, so `Last-Event-ID`
(header, or `last_event_id` query) resumes exactly after it on any gateway replica. A
position that cannot be resumed gets a snapshot first, then live events. The controls
(policy, capacity, debounce, batching, format) are parsed in `gateway/feed/controls.py`;
the stream loop that applies them is `gateway/feed/stream.py` (windows and formats:
`gateway/feed/pipeline.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import HeaderParameter, Parameter, QueryParameter
from litestar.response import Stream
from nats.errors import Error as NatsError
from nats.js.api import StreamInfo
from nats.js.errors import APIError

from common.envelope import uuid7
from common.errors import Unavailable
from common.subjects import valid_id
from gateway.backend import Backend
from gateway.dashboard import datastar
from gateway.feed import consumers, controls, snapshot
from gateway.feed.body import FeedStream
from gateway.feed.client import ClientFeed
from gateway.feed.controls import Controls
from gateway.feed.floors import Floor
from gateway.feed.policy import Policy
from gateway.feed.process import FeedProcess
from gateway.feed.refusals import refusal
from gateway.feed.stream import Session, stream
from gateway.feed.takeover import Handover
from gateway.feed.topics import Topic, parse_topics
from gateway.feed.wire import frame
from gateway.security.grants import PRINCIPAL

log = structlog.get_logger()
STORM_OPENS = 32  # feeds opening at once past which a named client's reset goes first


def parse_last_event_id(value: str | None) -> int | None:
    """A non-negative integer, or None for absent; -1 marks malformed (snapshot)."""
    if value is None or value == "":
        return None
    digits = value.isascii() and value.isdigit() and len(value) <= 19  # no '²', no 10**5000
    return int(value) if digits else -1


def resumable(position: int, first: int, last: int) -> bool:
    """Can a feed continue right after `position` in a stream holding `first`..`last`?

    Not when events after it are gone (older than the first, e.g. after a purge), when it
    is ahead of the stream (another stream, or a client's mistake), or malformed (-1).
    """
    return max(first, 1) - 1 <= position <= last


Topics = Annotated[
    str | None,
    Parameter(description="aggregate types, each with an optional id: todo_list:abc,user_profile"),
]
ClientId = Annotated[str | None, Parameter(description="names the client's durable consumer")]
PolicyName = Annotated[
    str | None, Parameter(description="block (default), drop-oldest, drop-newest or unbounded")
]
Capacity = Annotated[
    str | None,
    Parameter(description="events held per client / lag threshold: a whole number >= 1"),
]
DebounceMs = Annotated[
    str | None, Parameter(description="last event per aggregate per window: ms, 'on' or 'off'")
]
BatchMs = Annotated[str | None, Parameter(description="one message per window: ms, 'on' or 'off'")]
Format = Annotated[str | None, Parameter(description="json (default) or datastar")]
LastEventId = Annotated[
    str | None, QueryParameter(name="last_event_id", description="resume after this sequence")
]
LastEventIdHeader = Annotated[str | None, HeaderParameter(name="Last-Event-ID")]
DatastarRequest = Annotated[str | None, HeaderParameter(name="Datastar-Request")]


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """One `GET /api/events`, parsed: `client_id` as given, or a fresh uuid7 for an
    `ephemeral` consumer (no one can resume it by name: deleted as the feed ends);
    `resume` the `Last-Event-ID` (None: absent, -1: malformed)."""

    topics: tuple[Topic, ...]
    client_id: str
    ephemeral: bool
    controls: Controls
    resume: int | None


class EventsController(Controller):
    """`GET /api/events` (see the module docstring)."""

    path = "/api/events"
    tags = ["feed"]

    @get(media_type="text/event-stream")
    async def feed(
        self,
        *,
        backend: Backend,
        state: State,
        topics: Topics = None,
        client_id: ClientId = None,
        policy: PolicyName = None,
        capacity: Capacity = None,
        debounce_ms: DebounceMs = None,
        batch_ms: BatchMs = None,
        format: Format = None,
        last_event_id: LastEventId = None,
        last_event_id_header: LastEventIdHeader = None,
        datastar_request: DatastarRequest = None,
    ) -> Stream:
        """Server-Sent Events of the stream, filtered by `topics`. 422 for a parameter
        that cannot be understood, 429/503 past a budget, 4xx for what JetStream refuses
        (`refusals.py`), 503 when the stream cannot be followed right now."""
        settings = backend.settings
        ctl = controls.parse(
            settings,
            policy=policy,
            capacity=capacity,
            debounce_ms=debounce_ms,
            batch_ms=batch_ms,
            format=format,
            datastar_request=datastar_request is not None,
        )
        request = FeedRequest(
            topics=parse_topics(topics, settings.sse_max_topics),
            client_id=valid_id(client_id, "client_id") if client_id else uuid7(),
            ephemeral=not client_id,
            controls=ctl,
            resume=parse_last_event_id(last_event_id_header or last_event_id),
        )
        return await open_feed(backend, state.feeds, request, state.closing)


async def open_feed(
    backend: Backend, feeds: FeedProcess, request: FeedRequest, closing: asyncio.Event
) -> Stream:
    """The SSE response of `request` for the current principal: its consumer created or
    found again, counted against the principal's and the process's budgets, positioned
    (with a snapshot first when `resume` cannot be continued), then streamed until
    `closing` is set. Everything it holds is given back when it raises."""
    if closing.is_set():  # a feed opened now would end at once (attack15, Info)
        raise Unavailable("this gateway is shutting down; retry on another", retry_after=1)
    client = request.client_id
    principal = PRINCIPAL.get()
    ends = principal.feed_ends()  # 401 for a token already past its `exp`
    own = consumers.owner(principal.claims.subject if principal.claims else None)
    who = f"{own}_{client}" if own else client  # connections counted per owned client id
    feed = _client_feed(backend, feeds, request, client, own)
    if feed.tail is not None:
        await feed.tail.start()
    position, head, moved = await _admit(backend, feeds, feed, request, principal.key, who, closing)
    if feed.floor is not None:
        feed.floor.opened(position, write=moved)
    log.info("sse_opened", client_id=client, consumer=feed.name,
             policy=request.controls.policy.value, resume=request.resume, position=position,
             snapshot=bool(head))  # fmt: skip
    hello = {"client_id": client, "consumer": feed.name,
             "topics": [str(t) for t in request.topics], "position": position}  # fmt: skip
    # The first frame a client may resume from carries its position too; not when a
    # snapshot follows: then the client keeps its old id and gets the snapshot again.
    connected = frame(json.dumps(hello), event="connected", id=None if head else position)
    session = Session(
        feed=feed,
        controls=request.controls,
        settings=backend.settings,
        closing=closing,
        client_id=who,
        background=feeds.background,
        after=position,
        ends=ends,
    )
    return FeedStream(
        stream(session, connected + head),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _admit(
    backend: Backend,
    feeds: FeedProcess,
    feed: ClientFeed,
    request: FeedRequest,
    principal: str,
    who: str,
    closing: asyncio.Event,
) -> tuple[int, bytes, bool]:
    """`_position` of `feed` once an older connection of it ended (F3; the newest arrival
    wins, verify6 V3) and it is counted against the client's (`who`), the principal's and
    the process's budgets; everything it holds is given back when it raises."""
    mine = feed.handover
    await feeds.inbox.take_over(feed.name, mine)
    opened = False
    try:
        feeds.inbox.admit(who)
        try:
            feeds.ledger.claim(principal, feed.name, time.monotonic())
        except BaseException:
            feeds.inbox.release(who)
            raise
        feed.on_close = consumers.on_close(feeds.ledger, principal, feed,
                                           ephemeral=request.ephemeral,
                                           spawn=feeds.background.spawn)  # fmt: skip
        try:
            position, head, moved = await _position(backend, feeds, feed, request)
            if closing.is_set():  # the gateway began to stop meanwhile: the client goes elsewhere
                raise Unavailable("this gateway is shutting down; retry on another", retry_after=1)
            if mine is not None:  # a newer connection arrived while this one opened: it wins
                feeds.inbox.arrivals.check(feed.name, mine)
        except BaseException:
            feed.close()
            feeds.inbox.release(who)
            raise
        opened = True
        return position, head, moved
    finally:
        if mine is not None:
            feeds.inbox.arrivals.settled(feed.name, mine, opened)


def _client_feed(
    backend: Backend, feeds: FeedProcess, request: FeedRequest, client: str, owner: str
) -> ClientFeed:
    """The feed's consumer handle (nothing created yet); `unbounded` holds more, counted
    in the process's memory budget."""
    settings, capacity = backend.settings, request.controls.capacity
    unbounded = request.controls.policy is Policy.UNBOUNDED
    feed = ClientFeed(
        feeds.js,
        feeds.inbox,
        stream=backend.nats_settings.stream,
        subjects=backend.subjects,
        client_id=client,
        topics=request.topics,
        capacity=capacity,
        inactive_s=settings.sse_inactive_s,
        max_ack_pending=settings.sse_unbounded_cap + capacity if unbounded else None,
        owner=owner,
        held=feeds.holdings if unbounded else None,
    )
    feed.tail = feeds.tail
    if not request.ephemeral:  # a client that can return by name: its floor survives its consumer
        feed.floor = Floor(feeds.floors, feed.name)
        feed.handover = Handover()  # how a newer connection of it takes over (F3)
    return feed


async def _position(
    backend: Backend, feeds: FeedProcess, feed: ClientFeed, request: FeedRequest
) -> tuple[int, bytes, bool]:
    """(the stream position the feed starts after, the snapshot frame to send first or
    b"", whether its floor must be written now: a consumer created, or moved by
    `Last-Event-ID` outside a storm, where a floor write per open would be thousands of
    fsync'd writes at once). A consumer not in the stream yet must leave its reserve free (503).
    JetStream's refusals become 4xx (`refusals.py`), NATS trouble 503."""
    created = 0

    def creating(info: StreamInfo) -> None:  # only a consumer not in the stream yet: headroom
        nonlocal created
        consumers.check_headroom(info.state.consumer_count, info.config.max_consumers or 0,
                                 backend.settings.sse_reserved_consumers,
                                 feeds.ledger.opening)  # fmt: skip
        feeds.ledger.opening += 1  # counted against the stream's headroom until it exists
        created = 1

    # a named client resuming while many feeds open at once (a reconnect storm): its consumer
    # most likely exists, so it is reset at once (one JetStream request per open, not two)
    likely = not request.ephemeral and feeds.opens >= STORM_OPENS
    feeds.opens += 1
    try:
        with _answers(request.client_id):
            position, head, moved = await _open(backend, feeds, feed, request, creating, likely)
        return position, head, bool(created) or moved
    finally:
        feeds.ledger.opening -= created
        feeds.opens -= 1


@contextlib.contextmanager
def _answers(client_id: str) -> Iterator[None]:
    """JetStream's refusals as 4xx (`refusals.py`), NATS trouble as 503."""
    try:
        yield
    except APIError as exc:
        log.info("sse_refused", client_id=client_id, err_code=exc.err_code,
                 error=str(exc)[:200])  # fmt: skip
        raise refusal(exc) from None
    except (TimeoutError, NatsError) as exc:
        raise Unavailable(
            f"the event stream cannot be followed right now ({exc!s:.200}); retry",
            retry_after=1,
        ) from None


async def _open(
    backend: Backend,
    feeds: FeedProcess,
    feed: ClientFeed,
    request: FeedRequest,
    creating: Callable[[StreamInfo], None],
    likely: bool,
) -> tuple[int, bytes, bool]:
    """`_position`'s steps: the stream's bounds, a snapshot for an unresumable id, the open;
    the last is whether `Last-Event-ID` moved the consumer outside a storm."""
    info = await feeds.stream_info(backend.nats_settings.stream)
    if request.resume is not None and request.resume > info.state.last_seq:
        info = await feeds.js.stream_info(backend.nats_settings.stream)  # shared: too old
    resume, head = request.resume, b""
    first, last = info.state.first_seq, info.state.last_seq
    if resume is not None and not resumable(resume, first, last):
        resume, head = await _snapshot(backend, request, last)
    start = None if resume is None else resume + 1

    async def recall() -> int | None:
        """A named client without `Last-Event-ID` whose consumer is gone: after its floor
        (a snapshot first when the stream lost what follows it); None for a new client."""
        nonlocal head
        floor = await feeds.floors.get(feed.name)
        if floor is None:
            return None
        log.info("sse_consumer_lost", client_id=request.client_id, consumer=feed.name,
                 floor=floor)  # fmt: skip
        newest = last
        if floor > newest:  # the shared stream info may be one round trip old
            newest = (await feeds.js.stream_info(backend.nats_settings.stream)).state.last_seq
        if not resumable(floor, first, newest):
            floor, head = await _snapshot(backend, request, newest)
        return floor

    named = not request.ephemeral and start is None
    position = await feed.open(start, last, lambda: creating(info), likely=likely,
                               recall=recall if named else None)  # fmt: skip
    return position, head, start is not None and not likely


async def _snapshot(backend: Backend, request: FeedRequest, last: int) -> tuple[int, bytes]:
    """(the sequence the snapshot is as of, its frame in the client's format)."""
    seq, body = await snapshot.take(backend, request.topics, last)
    if request.controls.format == "datastar":
        return seq, datastar.render_snapshot(seq, body)
    return seq, frame(json.dumps(body, default=str), event="snapshot", id=seq)
