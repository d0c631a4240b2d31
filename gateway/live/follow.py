"""`GET /api/live`: follow the answer of a read-model query over SSE.

`?query=<projection>.<query>&<its parameters>` follows a catalogue query,
`?sql=<SELECT>` a read-only ad-hoc query (the sandbox of `POST /api/sql`). The feed sends
`event: result` with `id: S` and `data: {"sequence": S, "result": ..., "truncated"?}`: the
full answer as of stream sequence S, first at once, then each time a committed batch
changes it, at most once per `min_interval_ms`. `Last-Event-ID: S` resumes: the first
answer is as of S or later (an id ahead of the stream
resumes nothing, a malformed one is ignored: the first answer is a full answer anyway);
`min_seq=S` (read-your-writes) waits for S as other reads do (504 past the deadline).
Answers never go back in sequence. `format=datastar` sends each answer as a
`datastar-patch-signals` of the signal `signal` (default `live`); it is the default format
of a request with `Datastar-Request`. A failed evaluation is an `event: error` (the feed
goes on); in `format=datastar` it patches `<signal>.error` (`{"code", "message"}`) instead,
which every answer sets back to null. A token that expires ends the feed with
`event: expired`. Everything is checked before the stream starts: 404 unknown query, 422
bad parameters or SQL, 401/403 grants (`gateway/security/grants.py`), 429 budgets and a
busy gateway (`gateway/live/hub.py`), 400 the SQL time limit, 504 `min_seq` not reached.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Stream

from common import catalogue as catalogues
from common.errors import Invalid
from common.messages import LiveKey
from gateway import metrics
from gateway.api import reads
from gateway.backend import Backend
from gateway.dashboard import datastar
from gateway.feed import direct
from gateway.feed.body import FeedStream
from gateway.feed.sse import parse_last_event_id
from gateway.feed.wire import comment, fields, frame, retry
from gateway.live.answer import Answer, Subscriber, with_nulls
from gateway.live.hub import Ask, Hub, Key
from gateway.live.sink import Sink, wrote
from gateway.security.grants import PRINCIPAL, SQL, require_read

DATASTAR_SIGNALS = "datastar"  # a Datastar `@get`'s signals (JSON), never a query's parameter
OWN = frozenset(
    {"query", "sql", "format", "signal", "min_interval_ms", "last_event_id", reads.MIN_SEQ}
    | {DATASTAR_SIGNALS}
)
MAX_INTERVAL_MS = 60_000
_SIGNAL = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
DATASTAR = "datastar:"  # the cache name of a datastar feed's frames: this, then its signal
_json = msgspec.json.Encoder()


def target(
    query: str | None, sql: str | None, values: Mapping[str, str]
) -> tuple[str, str, dict[str, Any]]:
    """(projection, query, parameters) of a live query; 404 or 422 saying what is wrong."""
    extra = {k: v for k, v in values.items() if k not in OWN}
    if (query is None) == (sql is None):
        raise Invalid(
            "give exactly one of query=<projection>.<query> (a catalogue query, its parameters "
            "beside it) or sql=<one read-only SELECT>",
            field="query",
        )
    if sql is not None:
        if extra:
            raise Invalid(f"sql takes no parameters; got {sorted(extra)[0][:40]!r}", field="sql")
        if not sql.strip():
            raise Invalid("give the SQL text as a non-empty SELECT", field="sql")
        return SQL, SQL, {"sql": sql}
    assert query is not None
    projection, dot, name = query.partition(".")
    if not dot:
        raise Invalid(f"query must be <projection>.<query>, got {query[:80]!r}", field="query")
    cat = catalogues.current()
    params = reads.params_of(cat, projection, name, extra)  # 404 unknown, 422 bad parameters
    return projection, name, msgspec.to_builtins(cat.params(projection, name, params))


def interval(value: str | None, default: int, floor: int) -> int:
    """`min_interval_ms` as a whole number of ms from `floor` to `MAX_INTERVAL_MS`
    (`default` when absent); 422 otherwise."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and floor <= int(value) <= MAX_INTERVAL_MS):
        raise Invalid(
            f"min_interval_ms must be a whole number of ms from {floor} to {MAX_INTERVAL_MS}, "
            f"got {value[:40]!r}",
            field="min_interval_ms",
        )
    return int(value)


def renderer(format: str | None, signal: str | None) -> tuple[str, Callable[[Answer], bytes]]:
    """(cache name, render) of a feed's format; 422 for an unknown one."""
    if format in (None, "json"):
        return "json", lambda a: frame(_json.encode(a.body), event="result", id=a.sequence)
    if format != "datastar":
        raise Invalid(f"format must be json or datastar, got {format[:40]!r}", field="format")
    name = signal or "live"
    if not _SIGNAL.fullmatch(name):
        raise Invalid(f"signal must be a name like `live`, got {name[:40]!r}", field="signal")

    def signals(answer: Answer) -> bytes:  # a merge patch: what vanished is sent as null
        body = with_nulls(answer.body, {"truncated": None, "error": None, **answer.gone})
        patch = datastar.patch_signals({name: body})
        return fields(patch, event="datastar-patch-signals", id=answer.sequence)

    return f"{DATASTAR}{name}", signals


def failure(style: str, error: dict[str, Any]) -> bytes:
    """The frame telling a feed of `style` (a `renderer` cache name) that an evaluation
    failed (`error`: `{"code", "message"}`; the answer it holds stays). The plain format:
    `event: error`. Datastar (which ignores event types not its own): a
    `datastar-patch-signals` of `{<signal>: {"error": error}}` without `id:` (the client's
    resume point stays its answer's), cleared by the next answer's `"error": null`.
    Dashboard views (`gateway/live/views.py`): `event: error`, their element kept."""
    if style.startswith(DATASTAR):
        patch = datastar.patch_signals({style.removeprefix(DATASTAR): {"error": error}})
        return fields(patch, event="datastar-patch-signals")
    return frame(json.dumps(error), event="error")


class LiveController(Controller):
    """`GET /api/live` (see the module's doc)."""

    path = "/api/live"
    tags = ["read models"]

    @get(media_type="text/event-stream")
    async def live(
        self,
        request: Request[Any, Any, Any],
        backend: Backend,
        state: State,
        query_name: Annotated[
            str | None,
            Parameter(query="query", description="<projection>.<query>; its parameters beside it"),
        ] = None,
        sql: Annotated[str | None, Parameter(description="one read-only SELECT")] = None,
        format: Annotated[str | None, Parameter(description="json (default) or datastar")] = None,
        signal: Annotated[
            str | None, Parameter(description="the Datastar signal patched (default live)")
        ] = None,
        min_interval_ms: Annotated[
            str | None, Parameter(description="answers at most this often (default 250)")
        ] = None,
        last_event_id: Annotated[
            str | None, Parameter(query="last_event_id", description="resume at this sequence")
        ] = None,
        last_event_id_header: Annotated[str | None, Parameter(header="Last-Event-ID")] = None,
        datastar_request: Annotated[str | None, Parameter(header="Datastar-Request")] = None,
    ) -> Stream:
        """Server-Sent Events of a query's answer, kept current as batches commit."""
        arrived = time.monotonic()
        values = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
        projection, name, params = target(query_name, sql, values)
        settings = backend.settings
        every = interval(min_interval_ms, settings.live_interval_ms, settings.live_min_interval_ms)
        if format in (None, "") and datastar_request is not None:
            format = "datastar"  # as /api/events: a Datastar client gets its frames
        style, render = renderer(format, signal)
        resume = resume_point(last_event_id_header or last_event_id)
        return await follow(
            backend,
            state,
            (projection, name, params),
            every,
            (style, render),
            resume,
            min_seq=reads.min_seq(values),
            arrived=arrived,
        )


def resume_point(value: str | None) -> int:
    """A `Last-Event-ID` as a sequence; -1 for none or a malformed one (a fresh answer)."""
    after = parse_last_event_id(value)
    return -1 if after is None else after


class _Place:
    """A feed's place in the hub (its subscriber `me` of `key`, one of its principal's
    feeds), given back once: when its body ends, when the body is collected unstarted, or at
    the token's `exp` (Unix seconds), even while a write waits for a client that never
    reads."""

    def __init__(self, hub: Hub, key: Key, me: Subscriber, owner: str, ends: float | None):
        self.hub, self.key, self.me, self.owner = hub, key, me, owner
        self.released = False
        self.expiry: asyncio.TimerHandle | None = None
        if ends is not None:
            loop = asyncio.get_running_loop()
            self.expiry = loop.call_at(loop.time() + ends - time.time(), self.release)

    def release(self) -> None:
        """Leave the key, give the principal's place back, write nothing more but the
        `expired` frame."""
        if self.released:
            return
        self.released = True
        self.hub.leave(self.key, self.me)
        self.hub.release(self.owner)
        self.me.latest = None
        self.me.wake.set()
        if self.expiry is not None:
            self.expiry.cancel()


async def follow(
    backend: Backend,
    state: State,
    query: tuple[str, str, dict[str, Any]],
    every: int,
    style: tuple[str, Callable[[Answer], bytes]],
    after: int,
    *,
    min_seq: int = 0,
    arrived: float | None = None,
    owned: bool = True,
) -> Stream:
    """The SSE response following `query` (projection, name, typed parameters) for the
    current principal, at most one answer per `every` ms, each rendered by `style` (its
    cache name, its render), from the resume point `after` (-1: none; an id ahead of the
    stream resumes nothing). The first answer is as of `min_seq` or later (read-your-writes:
    504 if the read model does not get there in time), within `query_timeout_s` of
    `arrived` (`time.monotonic()`): 429 + Retry-After if it only waited for a slot, the time
    limit's error if it ran. `owned`: a new key is charged to this principal (False: a
    built-in view). 401/403 grants, 429 budgets, before it starts."""
    arrived = time.monotonic() if arrived is None else arrived
    deadline = arrived + backend.settings.query_timeout_s
    projection, name, params = query
    require_read(projection, params, name)  # 401/403 for this principal, every time
    after = max(await _resumable(backend, after), min_seq)  # a joiner's: min_seq or later
    hub: Hub = state.live
    principal = PRINCIPAL.get()
    ends = principal.feed_ends()  # 401 for a token already past its `exp`
    hub.admit(principal.key)
    key = key_of(projection, name, params, principal.key)
    me = Subscriber(after, interval_s=every / 1000)

    ask = _asker(backend, hub, LiveKey(projection=projection, name=name, params=params))
    try:
        await hub.subscribe(key, ask, after, me, principal if owned else None, deadline, min_seq)
    except BaseException:
        hub.release(principal.key)
        raise
    place = _Place(hub, key, me, principal.key, ends)
    settings = backend.settings
    head = retry(settings.sse_retry_ms)
    body = _answers(me, *style, head, settings.sse_keepalive_s, ends, state.closing, place.release)
    weakref.finalize(body, place.release)  # a body never started still gives its place back
    return FeedStream(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def key_of(projection: str, name: str, params: dict[str, Any], principal: str) -> Key:
    """The key a feed of `principal` follows: the query and its typed parameters (not the
    interval: feeds asking different intervals share it); ad-hoc SQL also the principal's,
    since SQL runs in its owner's budget (another principal following the same text must
    not be served from, and slowed by, the budget of whoever came first)."""
    return (projection, name, _json.encode(params).decode(), principal if projection == SQL else "")


def _asker(backend: Backend, hub: Hub, wanted: LiveKey) -> Ask:
    """How `wanted` is evaluated: ad-hoc SQL one request each (its sandbox and limits are
    per statement), a catalogue query in the hub's rounds (`gateway/live/rounds.py`)."""
    projection, name, params = wanted.projection, wanted.name, wanted.params

    async def ask(min_seq: int, left_s: float) -> bytes:
        if projection == SQL:
            return await backend.query(projection, name, params, min_seq, live=True, wait_s=left_s)
        return await hub.rounds.ask(backend.live_round, wanted, min_seq, left_s)

    return ask


async def _resumable(backend: Backend, after: int) -> int:
    """`after`, or -1 if it is ahead of the stream (an id of another stream)."""
    if after <= 0:
        return after
    info = await backend.nc.jetstream().stream_info(backend.nats_settings.stream)
    return after if after <= info.state.last_seq else -1


async def _answers(
    me: Subscriber,
    style: str,
    render: Callable[[Answer], bytes],
    head: bytes,
    keepalive_s: float,
    ends: float | None,
    closing: asyncio.Event,
    release: Callable[[], None],
) -> AsyncIterator[bytes]:
    """`head` (the `retry:` field), then each answer the subscriber takes, paced by its own
    interval (`Subscriber`; its frame rendered once per answer and format, `Answer.frame`: a
    write here is the same bytes for every subscriber), keep-alives between, until the
    client leaves, the gateway closes or the token expires (its place, key and pending
    answer are given back at `exp` by `follow`'s timer, whether or not this writes). One
    generator per feed, no wrapper (py-spy, `ironstar bench live`); while it waits with
    nothing held, the key's fan-out writes a due answer itself (`gateway/live/sink.py`)."""
    sink: Sink | None = None
    try:
        yield head
        socket = direct.socket()  # the response has started
        sink = Sink(me, style, render, socket) if socket is not None else None
        while not closing.is_set():
            now = time.monotonic()
            if ends is not None and ends <= time.time():
                yield frame(json.dumps({"reason": "the token expired; sign in again"}), "expired")
                return
            quiet = keepalive_s if sink is None else sink.wrote_at + keepalive_s - now
            if quiet <= 0:  # nothing written (by the fan-out either) for keepalive_s
                yield comment("keep-alive")
                wrote(sink)
                continue
            left = quiet if ends is None else min(quiet, ends - time.time())
            held = me.wake.is_set()  # something to write: wait only for its own interval
            if not held or now < me.next_at:
                pause = min(left, me.next_at - now) if held else left
                me.sink = None if held else sink
                try:
                    async with asyncio.timeout(pause):
                        await (closing if held else me.wake).wait()
                except TimeoutError:
                    if pause >= left and sink is None:
                        yield comment("keep-alive")
                finally:
                    me.sink = None
                continue
            me.wake.clear()
            if (error := me.take_error(time.monotonic())) is not None:
                yield failure(style, error)
                wrote(sink)
                continue
            answer = me.take()
            if answer is not None:
                me.pace(answer, time.monotonic())
                metrics.live_results.inc()
                yield answer.frame(style, render)
                wrote(sink)
    finally:
        me.sink = None
        release()
