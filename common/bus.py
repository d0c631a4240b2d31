"""NATS plumbing shared by every service: connect, the stream, request/reply with errors.

Services reply to requests with the result's JSON body, or with an `Ironstar-Error` header
and an `ErrorReply` body; `request` turns the latter back into the same exception class,
so an error raised in the writer reaches the gateway's error table unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from common.errors import (
    ErrorReply,
    Internal,
    Invalid,
    IronstarError,
    TooLarge,
    Unavailable,
    from_reply,
)
from common.settings import NatsSettings
from common.subjects import Subjects
from common.telemetry import bind_correlation, correlation_id

log = structlog.get_logger()

ERROR_HEADER = "Ironstar-Error"
CORRELATION_HEADER = "Ironstar-Correlation-Id"
MIN_DUPLICATE_WINDOW_S = 120.0
REPLY_HEADROOM = 1024  # bytes of a message kept for the reply's headers

_json = msgspec.json.Encoder()
_error_decoder = msgspec.json.Decoder(ErrorReply)

Handler = Callable[[Msg], Awaitable[bytes]]


class _Watch:
    """nats-py's callbacks for one connection: log what happens, notice refused credentials."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.refused = asyncio.Event()
        self.client: Client | None = None

    async def on_error(self, exc: Exception) -> None:
        if not self.quiet:
            log.warning("nats_error", error=str(exc))
        if "authorization violation" in str(exc).lower():
            self.refused.set()

    async def on_disconnected(self) -> None:
        if self.quiet or (self.client is not None and self.client.is_closed):
            return  # our own close() is not news
        log.warning("nats_disconnected")

    async def on_reconnected(self) -> None:
        if not self.quiet:
            log.info("nats_reconnected")

    async def settled(self, connecting: asyncio.Future[Client], wait_s: float) -> bool:
        """Whether `connecting` finished within `wait_s` seconds, credentials not refused;
        cancels it otherwise."""
        refusal: asyncio.Future[Any] = asyncio.ensure_future(self.refused.wait())
        await asyncio.wait(
            {connecting, refusal}, timeout=max(0.1, wait_s), return_when=asyncio.FIRST_COMPLETED
        )
        refusal.cancel()
        if connecting.done() and not self.refused.is_set():
            return True
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connecting
        return False


async def connect(
    settings: NatsSettings,
    name: str,
    wait_s: float = 30.0,
    *,
    reconnect: bool = True,
    quiet: bool = False,
) -> Client:
    """Connect to `settings.url` (comma-separated servers), retrying until `wait_s` seconds
    pass; afterwards keep reconnecting forever (a service), or, without `reconnect`, give up
    on the first loss (a one-shot probe such as `ironstar status`). `quiet` logs nothing of
    the connection's life (errors, disconnects), for a command whose output is its report.

    Raises Unavailable at once when the server refuses the credentials (no retry helps),
    else when no server answered within `wait_s`.
    """
    watch = _Watch(quiet)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        connecting = asyncio.ensure_future(
            nats.connect(
                settings.url.split(","),
                name=name,
                **credentials(settings),
                connect_timeout=2,
                allow_reconnect=reconnect,
                max_reconnect_attempts=-1 if reconnect else 0,
                reconnect_time_wait=0.5,
                error_cb=watch.on_error,
                disconnected_cb=watch.on_disconnected,
                reconnected_cb=watch.on_reconnected,
            )
        )
        if not await watch.settled(connecting, deadline - loop.time()):
            if watch.refused.is_set():
                raise Unavailable(
                    f"NATS at {settings.url} refused our credentials (user {settings.user!r}); "
                    "check IRONSTAR_NATS_USER/_PASSWORD/_CREDS_FILE"
                )
            raise Unavailable(f"cannot reach NATS at {settings.url} within {wait_s:g} s")
        try:
            watch.client = connecting.result()
            return watch.client
        except (OSError, NatsTimeout, nats.errors.NoServersError) as exc:
            if loop.time() > deadline:
                raise Unavailable(f"cannot reach NATS at {settings.url}: {exc}") from None
            await asyncio.sleep(0.2)


async def goodbye(nc: Client) -> None:
    """Drain at shutdown, or just close when NATS is already gone (reconnecting or closed):
    a server that went first leaves nothing to flush, and is no reason to fail a clean stop."""
    try:
        await nc.drain()
    except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError) as exc:
        log.warning("nats_gone_at_shutdown", error=type(exc).__name__)
        await nc.close()


def credentials(settings: NatsSettings) -> dict[str, Any]:
    """nats.connect options for user/password or a creds file, and TLS when configured."""
    options: dict[str, Any] = {}
    if settings.user:
        options.update(user=settings.user, password=settings.password)
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    wants_tls = settings.tls_ca_file or settings.tls_cert_file or "tls://" in settings.url
    if wants_tls:
        context = ssl.create_default_context(cafile=settings.tls_ca_file or None)
        if settings.tls_cert_file:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
        options["tls"] = context
    return options


def stream_config(settings: NatsSettings) -> StreamConfig:
    """The event store: file storage, no limits, refuse when full, never delete history.
    Raises Invalid when the duplicate window is under MIN_DUPLICATE_WINDOW_S (120 s): a
    retried publish of the same append (a lost ack) must still be recognised as one
    (docs/architecture.md, message ids)."""
    if settings.duplicate_window_s < MIN_DUPLICATE_WINDOW_S:
        raise Invalid(
            f"IRONSTAR_NATS_DUPLICATE_WINDOW_S is {settings.duplicate_window_s:g}; it must be at "
            f"least {MIN_DUPLICATE_WINDOW_S:g} s so a client's retry is still recognised",
            field="duplicate_window_s",
        )
    return StreamConfig(
        name=settings.stream,
        subjects=[Subjects(settings.prefix).all_events],
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        max_consumers=settings.max_consumers,
        allow_direct=True,
        allow_atomic=True,
        deny_delete=True,
        deny_purge=True,
    )


async def ensure_stream(nc: Client, settings: NatsSettings) -> None:
    """Create the stream, or bring an existing one to the configured settings. Raises
    Unavailable when the existing stream cannot change to them (e.g. its storage type or
    a single-replica stream's replicas, JetStream 10052), Invalid as `stream_config`."""
    js = nc.jetstream()
    config = stream_config(settings)
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream_created", stream=settings.stream, replicas=settings.replicas)
        return
    try:
        await js.update_stream(config)
    except APIError as exc:  # e.g. 10052: storage type or replicas of a R1 stream
        raise Unavailable(
            f"stream {settings.stream} exists with settings that cannot change to the "
            f"configured ones ({exc.description}); align IRONSTAR_NATS_* or migrate the stream"
        ) from None


async def request(
    nc: Client, subject: str, body: bytes, timeout_s: float, what: str, first: str | None = None
) -> bytes:
    """Send `body` to the service `what` answering on `subject` and return its reply body,
    waiting up to `timeout_s` seconds. With `first`, it goes there first and to `subject`
    only if nothing listens on `first` (NATS answers "no responders" at once): e.g. the
    caught-up projector replicas first, any replica else (`Subjects.current`). Raises the
    service's own error (the IronstarError of its `Ironstar-Error` reply, rebuilt by
    `from_reply`), or Unavailable (503, retry after 1 s) when no service listens or none
    answers in time."""
    headers = {CORRELATION_HEADER: correlation_id()}

    async def ask(where: str) -> Msg:
        return await nc.request(where, body, timeout=timeout_s, headers=headers)

    try:
        try:
            reply = await ask(first or subject)
        except NoRespondersError:
            if first is None:
                raise
            reply = await ask(subject)
    except NoRespondersError:
        raise Unavailable(f"no {what} is running; start one and retry", retry_after=1) from None
    except NatsTimeout:
        raise Unavailable(
            f"the {what} did not answer within {timeout_s:g} s; retry", retry_after=1
        ) from None
    if reply.headers and ERROR_HEADER in reply.headers:
        raise from_reply(_error_decoder.decode(reply.data))
    return reply.data


# Failures to reach something, not bugs: a retry may succeed (503).
_UNREACHABLE = (nats.errors.Error, TimeoutError, OSError, MemoryError)


def _as_error(subject: str, exc: Exception) -> IronstarError:
    """What a handler's exception answers (`serve`'s rule): itself when an IronstarError,
    503 for a failure to reach something, else 500 naming the correlation id, logged."""
    if isinstance(exc, IronstarError):
        return exc
    if isinstance(exc, _UNREACHABLE):
        log.warning("request_unavailable", subject=subject, error=repr(exc))
        return Unavailable(
            f"a service could not be reached while answering ({type(exc).__name__}); retry",
            retry_after=1,
        )
    log.exception("unhandled_exception", subject=subject, error=type(exc).__name__)
    cid = correlation_id()
    return Internal(
        f"the service failed on this request; it is logged under correlation id {cid}",
        correlation_id=cid,
    )


def _error_reply(error: IronstarError) -> tuple[bytes, dict[str, str]]:
    return _json.encode(error.to_reply()), {ERROR_HEADER: error.code}


async def serve(
    nc: Client,
    subject: str,
    queue: str,
    handler: Handler,
    concurrency: int | asyncio.Semaphore,
    flush: bool = True,
) -> Subscription:
    """Answer requests on `subject` in `queue`, up to `concurrency` at once (a semaphore:
    shared with the other subscriptions given it).

    Each request runs in its own task so one slow request does not hold up the others;
    an `IronstarError` becomes an error reply. A failure to reach something (NATS, a
    socket, a timeout) is a 503 to retry; anything else is a bug (e.g. the app's `decide`
    or query raising): logged with its traceback as `unhandled_exception` and answered
    500 `Internal` naming only the correlation id (no retry helps; docs/security.md), so a
    client never hangs until its timeout. A reply over the server's max payload
    becomes a 413 (it could never be delivered, so a retry would not help).
    Returns the subscription, already known to the server unless not `flush`
    (unsubscribe or drain it to stop serving).
    """
    slots = (
        concurrency
        if isinstance(concurrency, asyncio.Semaphore)
        else asyncio.Semaphore(concurrency)
    )
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        async with slots:
            bind_correlation((msg.headers or {}).get(CORRELATION_HEADER))
            headers: dict[str, str] | None = None
            try:
                body = await handler(msg)
            except Exception as exc:
                body, headers = _error_reply(_as_error(msg.subject, exc))
            if len(body) > nc.max_payload - REPLY_HEADROOM:  # could never be delivered
                log.error("reply_too_large", subject=msg.subject, size=len(body))
                body, headers = _error_reply(
                    TooLarge(
                        f"the answer is {len(body):,} bytes, over the {nc.max_payload:,}-byte "
                        "limit of a NATS message; ask for less",
                        limit="bytes",
                    )
                )
            if msg.reply:
                await nc.publish(msg.reply, body, headers=headers)

    async def on_message(msg: Msg) -> None:
        task = asyncio.create_task(answer(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sub = await nc.subscribe(subject, queue=queue, cb=on_message, pending_msgs_limit=65536)
    if flush:
        await nc.flush()  # the server knows the subscription before anyone is told we serve
    return sub
