"""`GET /api/events`: the live feed, one durable consumer per client.

Each message's `id:` is the stream sequence of its (last) event, so `Last-Event-ID`
(header, or `last_event_id` query) resumes exactly after it on any gateway replica. A
position that cannot be resumed gets a snapshot first, then live events. The controls
(policy, capacity, debounce, batching, format) are parsed in `gateway/feed/controls.py`;
the stream loop that applies them is `gateway/feed/stream.py` (windows and formats:
`gateway/feed/pipeline.py`).
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import structlog
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Stream
from nats.errors import Error as NatsError
from nats.js.errors import APIError

from common.envelope import uuid7
from common.errors import Unavailable
from common.subjects import valid_id
from gateway.backend import Backend
from gateway.dashboard import datastar
from gateway.feed import consumers, controls, holdings, inbox, snapshot, tail
from gateway.feed.client import ClientFeed, parse_topics
from gateway.feed.policy import Policy
from gateway.feed.refusals import refusal
from gateway.feed.stream import Session, stream
from gateway.feed.wire import frame
from gateway.security.grants import PRINCIPAL

log = structlog.get_logger()


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
        policy: Annotated[
            str | None,
            Parameter(description="block (default), drop-oldest, drop-newest or unbounded"),
        ] = None,
        capacity: Annotated[
            str | None,
            Parameter(description="events held per client / lag threshold: a whole number >= 1"),
        ] = None,
        debounce_ms: Annotated[
            str | None,
            Parameter(description="last event per aggregate per window: ms, 'on' or 'off'"),
        ] = None,
        batch_ms: Annotated[
            str | None, Parameter(description="one message per window: ms, 'on' or 'off'")
        ] = None,
        format: Annotated[str | None, Parameter(description="json (default) or datastar")] = None,
        last_event_id: Annotated[
            str | None, Parameter(query="last_event_id", description="resume after this sequence")
        ] = None,
        last_event_id_header: Annotated[str | None, Parameter(header="Last-Event-ID")] = None,
        datastar_request: Annotated[str | None, Parameter(header="Datastar-Request")] = None,
    ) -> Stream:
        """Server-Sent Events of the stream, filtered by `topics`."""
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
        parsed = parse_topics(topics, settings.sse_max_topics)
        client = valid_id(client_id, "client_id") if client_id else uuid7()
        box = await inbox.of(
            state, backend.nc, settings.sse_max_per_client, settings.sse_max_connections
        )
        principal = PRINCIPAL.get()
        own = consumers.owner(principal.claims.subject if principal.claims else None)
        who = f"{own}_{client}" if own else client  # connections counted per owned client id
        unbounded = ctl.policy is Policy.UNBOUNDED
        feed = ClientFeed(
            backend.nc.jetstream(),
            box,
            backend.nats.stream,
            backend.subjects,
            client,
            parsed,
            ctl.capacity,
            settings.sse_inactive_s,
            max_ack_pending=settings.sse_unbounded_cap + ctl.capacity if unbounded else None,
            owner=own,
            held=holdings.of(state, settings.sse_unbounded_budget_bytes) if unbounded else None,
        )
        if settings.sse_live_tail:
            feed.tail = tail.of(state, backend.nc, backend.nats.stream, backend.subjects.all_events)
            await feed.tail.start()
        box.admit(who)
        ledger = consumers.ledger_of(state, settings)
        try:
            new = ledger.claim(principal.key, feed.name, time.monotonic())
        except BaseException:
            box.release(who)
            raise
        feed.on_close = consumers.on_close(ledger, principal.key, feed, ephemeral=not client_id)
        ledger.opening += new  # counted against the stream's headroom until it exists
        try:
            resume = parse_last_event_id(last_event_id_header or last_event_id)
            info = await backend.nc.jetstream().stream_info(backend.nats.stream)
            first, last = info.state.first_seq, info.state.last_seq
            if new:
                consumers.check_headroom(
                    info.state.consumer_count,
                    info.config.max_consumers or 0,
                    settings.sse_reserved_consumers,
                    ledger.opening - 1,
                )
            head = b""
            if resume is not None and not resumable(resume, first, last):
                seq, body = await snapshot.take(backend, parsed, last)
                head = (
                    datastar.render_snapshot(seq, body)
                    if ctl.format == "datastar"
                    else frame(json.dumps(body, default=str), event="snapshot", id=seq)
                )
                resume = seq
            position = await feed.open(None if resume is None else resume + 1, last)
        except APIError as exc:
            feed.close()
            box.release(who)
            log.info("sse_refused", client_id=client, err_code=exc.err_code, error=str(exc)[:200])
            raise refusal(exc) from None
        except (TimeoutError, NatsError) as exc:
            feed.close()
            box.release(who)
            raise Unavailable(
                f"the event stream cannot be followed right now ({exc!s:.200}); retry",
                retry_after=1,
            ) from None
        except BaseException:
            feed.close()
            box.release(who)
            raise
        finally:
            ledger.opening -= new
        log.info("sse_opened", client_id=client, consumer=feed.name, policy=ctl.policy.value,
                 resume=resume, position=position, snapshot=bool(head))  # fmt: skip
        hello = {
            "client_id": client,
            "consumer": feed.name,
            "topics": [str(t) for t in parsed],
            "position": position,
        }
        # The first frame a client may resume from carries its position too; not when a
        # snapshot follows: then the client keeps its old id and gets the snapshot again.
        connected = frame(json.dumps(hello), event="connected", id=None if head else position)
        session = Session(feed, ctl, settings, state.closing, who, after=position)
        return Stream(
            stream(session, connected + head),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
