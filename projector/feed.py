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

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError


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
    js = nc.jetstream()
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
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(size, timeout=wait_s)
            except (TimeoutError, NatsTimeout):  # nats-py raises either on an empty fetch
                continue
            if not msgs:
                continue
            deliveries = [Delivery(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
            yield Batch(deliveries, msgs[-1].metadata.num_pending, msgs[-1])
    finally:
        await sub.unsubscribe()
