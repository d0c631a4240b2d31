"""Each feed's own pace (`gateway/live/follow.py`): a key runs at its fastest feed's
interval, and every feed writes one answer per its own `min_interval_ms` on average, paced
by the answers' arrival (two frames never closer than half of it), the latest it holds."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

from gateway.live.answer import Answer, Subscriber
from gateway.live.follow import _answers

INTERVAL_S = 0.3


async def test_a_feed_writes_at_most_one_answer_per_its_own_interval_the_latest() -> None:
    me, closing = Subscriber(interval_s=INTERVAL_S), asyncio.Event()
    body = _answers(
        me, "json", lambda a: str(a.sequence).encode(), b"", 15, None, closing, lambda: None
    )
    assert await anext(body) == b""  # the head
    written: list[tuple[float, bytes]] = []

    async def offer() -> None:  # a fast key: an answer every 20 ms
        for sequence in range(1, 40):
            me.offer(Answer(sequence, sequence, {"sequence": sequence}))
            await asyncio.sleep(0.02)  # the pace of the offers is the point

    offering = asyncio.create_task(offer())
    async with asyncio.timeout(10):
        async for frame in body:
            written.append((time.monotonic(), frame))
            if frame == b"39":
                break
    await offering
    gaps = [b[0] - a[0] for a, b in pairwise(written)]
    assert all(gap >= INTERVAL_S / 2 * 0.95 for gap in gaps), gaps
    assert 2 <= len(written) <= 5, written  # ~0.8 s of offers at 0.3 s a frame, then the last
    sequences = [int(frame) for _, frame in written]
    assert sequences == sorted(sequences)
    closing.set()
    await body.aclose()
