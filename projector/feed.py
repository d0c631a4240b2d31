"""The projector's feed: its own durable consumer, recreated from the DuckDB checkpoint.

The DuckDB file is the truth about what was applied; the consumer is only a cursor. At
start the replica's consumer is deleted and created again to deliver from checkpoint + 1,
so a crash between commit and ack re-delivers nothing that was applied, and an old
consumer position never skips events the file has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Delivery:
    sequence: int
    subject: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    deliveries: list[Delivery]
    pending: int  # messages left in the stream for this consumer after this batch
    _last: Msg

    async def ack(self) -> None:
        """Ack every message of the batch at once (AckAll); call only after commit."""
        await self._last.ack()


async def batches(
    nc: Client,
    stream: str,
    durable: str,
    subject: str,
    after: int,
    size: int,
    wait_s: float,
    stop: asyncio.Event,
) -> AsyncIterator[Batch]:
    """Contiguous batches after `after`: the stream's sequences have no holes.

    A delivery that went to a pull request lost in a reconnect would be acknowledged by
    the next batch's AckAll and never seen: so a batch that does not start right after
    the last one is not applied; the consumer is recreated from the last applied sequence
    instead. Redeliveries of what was already yielded are dropped.
    """
    position = after
    sub = await _subscribe(nc.jetstream(), stream, durable, subject, position)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(size, timeout=wait_s)
            except (TimeoutError, NatsTimeout):  # nats-py raises both kinds
                continue
            except (ServiceUnavailableError, NoRespondersError, ConnectionReconnectingError):
                await asyncio.sleep(wait_s)  # the cluster is moving the consumer's leader
                continue
            fresh = [m for m in msgs if m.metadata.sequence.stream > position]
            contiguous = [
                m for n, m in enumerate(fresh) if m.metadata.sequence.stream == position + 1 + n
            ]
            if contiguous:
                deliveries = [
                    Delivery(m.metadata.sequence.stream, m.subject, m.data) for m in contiguous
                ]
                yield Batch(deliveries, contiguous[-1].metadata.num_pending, contiguous[-1])
                position = deliveries[-1].sequence
            if len(contiguous) < len(fresh):
                log.warning(
                    "feed_gap", after=position, got=fresh[len(contiguous)].metadata.sequence.stream
                )
                await sub.unsubscribe()
                sub = await _subscribe(nc.jetstream(), stream, durable, subject, position)
    finally:
        await sub.unsubscribe()


async def _subscribe(
    js: JetStreamContext, stream: str, durable: str, subject: str, after: int
) -> JetStreamContext.PullSubscription:
    """(Re)create the durable consumer to deliver from `after + 1`."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, durable)
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.ALL,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
        opt_start_seq=after + 1 if after else None,
        filter_subject=subject,
        max_ack_pending=-1,
        ack_wait=60,
        max_waiting=4,
    )
    return await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
