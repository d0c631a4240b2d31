"""The projector's feed against a real stream."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js.api import StreamConfig

from common.settings import NatsSettings
from common.subjects import Subjects
from projector.feed import Feed


async def test_a_stream_that_starts_after_sequence_1_is_read_from_its_first_event(
    nats_settings: NatsSettings, nc: Client
) -> None:
    stream = nats_settings.stream + "_LATE"
    prefix = nats_settings.prefix + "late"
    subject = Subjects(prefix).all_events
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[subject], first_seq=100))
    for n in range(5):
        await js.publish(Subjects(prefix).events("todo_list", f"l{n}"), b"{}")

    feed = await Feed(nc, stream, "late", subject, after=0, size=10, linger_s=0.01).start()
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(10):
            batch = await feed.next(stop)
    finally:
        await feed.close(delete=True)
        await js.delete_stream(stream)

    assert batch is not None
    assert [sequence for sequence, _, _ in batch.deliveries] == [100, 101, 102, 103, 104]
