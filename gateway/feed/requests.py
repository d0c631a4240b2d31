"""The JetStream API requests about one feed's durable consumer: the config it is created
with, and `$JS.API.CONSUMER.RESET` (nats-server >= 2.14), which moves an existing consumer
to deliver from a stream sequence next, counting everything before it as acknowledged.
nats-server 2.15 does not answer a reset of a consumer that does not exist."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

ACK_WAIT_S = 30  # redelivery of an unacked delivery (seconds)
MAX_WAITING = 16  # pull requests a consumer keeps waiting


def config(
    name: str, filters: list[str], start: int, max_ack_pending: int, inactive_s: float
) -> ConsumerConfig:
    """A feed's consumer: durable `name`, delivering `filters` (stream subjects) from stream
    sequence `start`, acked with AckAll, at most `max_ack_pending` deliveries unacked, in
    memory with one replica, removed `inactive_s` seconds after its last request."""
    return ConsumerConfig(
        durable_name=name,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.ALL,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=max_ack_pending,
        max_waiting=MAX_WAITING,
        filter_subjects=filters if len(filters) > 1 else None,
        filter_subject=filters[0] if len(filters) == 1 else None,
        inactive_threshold=inactive_s,
        num_replicas=1,
        mem_storage=True,
    )


def reset_subject(stream: str, name: str) -> str:
    """The subject of consumer `name`'s reset request on `stream`."""
    return f"$JS.API.CONSUMER.RESET.{stream}.{name}"


def reset_body(start: int) -> bytes:
    """A reset request's body: deliver from stream sequence `start` next."""
    return b'{"seq":%d}' % start


async def reset(nc: Client, subject: str, start: int, timeout_s: float) -> dict[str, Any]:
    """Reset the consumer of `subject` (`reset_subject`) to `start` and return JetStream's
    answer: the consumer's info after the reset, or `{"error": {...}}` for a refusal.
    Raises TimeoutError (no answer within `timeout_s` seconds: e.g. no such consumer) or a
    nats-py error of the connection."""
    reply = await nc.request(subject, reset_body(start), timeout=timeout_s)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


def idle_with_bound(answer: dict[str, Any], max_ack_pending: int) -> bool:
    """A reset's `answer` shows a consumer with no pull request waiting and this bound of
    unacked deliveries (so it can be pulled as it is, not replaced)."""
    config = answer.get("config") or {}
    idle = "error" not in answer and not answer.get("num_waiting")
    return bool(idle and config.get("max_ack_pending") == max_ack_pending)


def replay_from(info: ConsumerInfo) -> int:
    """Where a consumer that is replaced starts again: after its ack floor (what was in
    flight comes again), else after what it delivered if nothing is unacked, else its own
    start sequence (0: none)."""
    floor = info.ack_floor.stream_seq if info.ack_floor else 0
    delivered = info.delivered.stream_seq if info.delivered else 0
    if floor:
        return int(floor) + 1
    if delivered and not info.num_ack_pending:
        return int(delivered) + 1
    return int(info.config.opt_start_seq or 0)


def stale(info: ConsumerInfo, max_ack_pending: int) -> bool:
    """Whether an existing consumer cannot simply continue: deliveries in flight, waiting pull
    requests, or another bound than `max_ack_pending`."""
    return bool(
        info.num_ack_pending or info.num_waiting or info.config.max_ack_pending != max_ack_pending
    )


async def start_at(
    info: ConsumerInfo | None,
    start: int | None,
    last: int,
    stale: bool,
    creating: Callable[[], None],
    recall: Callable[[], Awaitable[int | None]] | None,
) -> int | None:
    """Where a feed's consumer starts (`ClientFeed.open`; None: the existing one continues as it
    is): `start`, a `stale` consumer's replay position, a lost consumer's floor (`recall`) or
    after `last`. `creating` is called (it may raise to refuse) when no consumer exists."""
    if info is not None and start is None and stale:
        start = replay_from(info) or last + 1
    if info is None:
        creating()  # a consumer more in the stream: its budget may refuse (raises)
    if info is None and start is None and recall is not None:
        known = await recall()  # a returning client whose consumer was lost: its floor
        start = None if known is None else known + 1
    if info is None and start is None:
        start = last + 1
    return start
