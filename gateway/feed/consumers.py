"""Who owns a feed's consumer, and how many consumers each owner may hold.

With auth on, a consumer's name carries a hash of the token's subject
(`sse_<owner>_<client_id>_<topics>`), so another principal reusing the same `client_id`
names a different consumer: it cannot read, move, split, delete or exhaust this one. The
name depends only on subject, client id and topics, so any gateway replica finds it.
Without auth (loopback, one user) the name is `sse_<client_id>_<topics>` as before.

JetStream keeps a consumer `sse_inactive_s` after its last connection, and the stream
holds at most `max_consumers`. So this gateway counts, per principal (token subject, or
client address without auth), the consumers it created that are open or still alive
(`Ledger`), and refuses a new one past `sse_max_consumers_per_principal` with a 429 whose
`Retry-After` says when the oldest will be gone. A feed without `client_id` can only be
resumed by `Last-Event-ID`, which creates a new consumer from that sequence: its consumer
is deleted as its connection ends and never lingers. And no feed takes one of the
`sse_reserved_consumers` the stream keeps for projectors (503 with `Retry-After`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from common.errors import TooManyRequests, Unavailable
from common.settings import GatewaySettings
from gateway.feed.client import ClientFeed

log = structlog.get_logger()

SWEEP_EVERY_S = 60.0
# nats-server's own limit when a stream sets none (max_consumers -1 or 0)
SERVER_DEFAULT_MAX_CONSUMERS = 1_000


def owner(subject: str | None) -> str:
    """The owner part of a consumer name: '' without auth, else a hash of the subject."""
    if subject is None:
        return ""
    return hashlib.sha256(b"ironstar-feed\0" + subject.encode()).hexdigest()[:24]


class Ledger:
    """Consumers this gateway created, per principal, until JetStream forgets them."""

    def __init__(self, per_principal: int, linger_s: float) -> None:
        self.per_principal = per_principal
        self.linger_s = linger_s
        self.opening = 0  # consumers being created right now (not yet in the stream's count)
        # principal → consumer → [open connections, when JetStream forgets it once closed]
        self._held: dict[str, dict[str, list[float]]] = {}
        self._swept = 0.0

    def claim(self, principal: str, consumer: str, now: float) -> bool:
        """Count a connection of `consumer` for `principal`; True when the consumer is new
        to this gateway. 429 when the principal already holds its budget of open or
        lingering consumers."""
        self._sweep(now)
        held = self._held.setdefault(principal, {})
        if consumer in held and (held[consumer][0] or held[consumer][1] > now):
            held[consumer][0] += 1
            return False
        if len(held) >= self.per_principal:  # at the budget: forget what JetStream forgot
            for name, (connections, gone) in list(held.items()):  # (only then: O(held))
                if not connections and gone <= now:
                    del held[name]
        if len(held) >= self.per_principal:
            lingering = [gone for connections, gone in held.values() if not connections]
            wait = max(1, math.ceil(min(lingering) - now)) if lingering else 5
            raise TooManyRequests(
                f"this client holds its budget of {self.per_principal} feed consumers "
                "(open, or closed less than IRONSTAR_GATEWAY_SSE_INACTIVE_S = "
                f"{self.linger_s:g} s ago; IRONSTAR_GATEWAY_SSE_MAX_CONSUMERS_PER_PRINCIPAL): "
                "reconnect with the client_id of a feed you already hold, close a feed you "
                f"no longer need, or retry after {wait} s (a feed without a client_id counts "
                "too, until it closes)",
                retry_after=wait,
                budget="sse_max_consumers_per_principal",
                limit=self.per_principal,
            )
        held[consumer] = [1, math.inf]
        return True

    def release(self, principal: str, consumer: str, now: float) -> None:
        """A connection ended: once none is left, the consumer lingers `linger_s`."""
        entry = self._held.get(principal, {}).get(consumer)
        if entry is not None and entry[0] > 0:
            entry[0] -= 1
            if not entry[0]:
                entry[1] = now + self.linger_s

    def forget(self, principal: str, consumer: str) -> None:
        """The consumer was deleted: it no longer counts (unless reopened meanwhile)."""
        held = self._held.get(principal, {})
        if consumer in held and not held[consumer][0]:
            del held[consumer]

    def held(self, principal: str) -> int:
        """How many consumers `principal` holds on this gateway (open, or lingering after their last
        connection)."""
        return len(self._held.get(principal, ()))

    def _sweep(self, now: float) -> None:
        """Forget principals whose consumers are all gone (bounded memory)."""
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        for principal, held in list(self._held.items()):
            if all(not connections and gone <= now for connections, gone in held.values()):
                del self._held[principal]


def check_headroom(consumers: int, max_consumers: int, reserved: int, opening: int) -> None:
    """503 when a new feed consumer would take one the stream keeps for projectors."""
    limit = max_consumers if max_consumers > 0 else SERVER_DEFAULT_MAX_CONSUMERS
    if consumers + opening >= limit - reserved:
        raise Unavailable(
            f"the event stream holds {consumers} of its {limit} consumers and keeps the last "
            f"{reserved} for projectors (IRONSTAR_GATEWAY_SSE_RESERVED_CONSUMERS); feeds' "
            "consumers of closed connections are removed after IRONSTAR_GATEWAY_SSE_INACTIVE_S; "
            "retry later",
            retry_after=30,
            budget="sse_reserved_consumers",
        )


def sizing_problem(max_consumers: int, reserved: int, connections: int) -> str:
    """Why this gateway's connection limit cannot be reached on a stream of
    `max_consumers` ('' when it can): every open feed holds a consumer, the tail one more
    (gateway/feed/tail.py), and feeds never take the `reserved` last ones."""
    limit = max_consumers if max_consumers > 0 else SERVER_DEFAULT_MAX_CONSUMERS
    room = limit - reserved - 1
    if room >= connections:
        return ""
    return (
        f"the stream allows {limit} consumers, {reserved} of them reserved "
        f"(IRONSTAR_GATEWAY_SSE_RESERVED_CONSUMERS), so at most {max(room, 0)} feeds, fewer "
        f"than IRONSTAR_GATEWAY_SSE_MAX_CONNECTIONS = {connections}: raise "
        "IRONSTAR_NATS_MAX_CONSUMERS to at least the sum of every gateway's connection "
        "limit, plus the reserve, plus the consumers of clients that left in the last "
        "IRONSTAR_GATEWAY_SSE_INACTIVE_S (docs/operations.md, Sizing)"
    )


async def check_sizing(nc: Any, stream: str, settings: GatewaySettings) -> None:
    """Log `sse_limits_unreachable` at start when the stream cannot hold this gateway's
    connection limit (a stream not there yet is the writer's to create: not checked)."""
    try:
        info = await nc.jetstream().stream_info(stream)
    except (TimeoutError, NatsError):
        return
    problem = sizing_problem(
        info.config.max_consumers or 0,
        settings.sse_reserved_consumers,
        settings.sse_max_connections,
    )
    if problem:
        log.warning("sse_limits_unreachable", problem=problem)


def on_close(
    ledger: Ledger,
    principal: str,
    feed: ClientFeed,
    *,
    ephemeral: bool,
    spawn: Callable[[Coroutine[Any, Any, None]], None],
) -> Callable[[], None]:
    """What to do when a feed's connection ends: count its consumer as lingering, and
    delete it at once when no one can resume it by name (`ephemeral`: a feed without
    `client_id`), as work handed to `spawn` (a close never awaits)."""

    def closed() -> None:
        ledger.release(principal, feed.name, time.monotonic())
        if not ephemeral:
            return
        work = _delete(ledger, principal, feed)
        try:
            spawn(work)
        except RuntimeError:  # collected outside the loop: JetStream removes it in time
            work.close()

    return closed


async def _delete(ledger: Ledger, principal: str, feed: ClientFeed) -> None:
    try:
        await feed.js.delete_consumer(feed.stream, feed.name)
    except NotFoundError:
        pass
    except (TimeoutError, NatsError) as exc:  # JetStream removes it after sse_inactive_s
        log.warning("sse_consumer_not_deleted", consumer=feed.name, error=str(exc)[:200])
        return
    ledger.forget(principal, feed.name)
