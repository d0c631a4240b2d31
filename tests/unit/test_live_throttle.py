"""The throttle of a live query (`gateway/live/hub.py`): the first answer after a quiet period
goes out at once (leading edge); batches that commit while the interval is closed cost one
evaluation when it opens, as of the newest of them."""

from __future__ import annotations

import asyncio
import json
import time

from gateway.live.answer import Subscriber
from gateway.live.hub import Hub, Key
from tests.unit.test_live_handoff import hub, next_answer

__all__ = ["hub"]  # the fixture, shared with the handoff's tests

INTERVAL_MS = 300
KEY: Key = ("todo_lists", "get", '{"list_id": "l"}', "")


class Projector:
    """Answers as of its newest committed batch; records the `min_seq` of each ask."""

    def __init__(self) -> None:
        self.sequence = 1
        self.asked: list[int] = []

    async def ask(self, min_seq: int, left_s: float) -> bytes:
        self.asked.append(min_seq)
        body = {"sequence": self.sequence, "result": self.sequence, "reads": ["todos"]}
        return json.dumps(body).encode()

    def commit(self, hub: Hub, sequence: int) -> None:
        self.sequence = sequence
        for evaluation in list(hub.evaluations.values()):
            evaluation.announce(sequence, frozenset({"todos"}))


async def test_the_first_answer_after_a_quiet_period_goes_out_at_once(hub: Hub) -> None:
    projector, feed = Projector(), Subscriber(interval_s=INTERVAL_MS / 1000)
    await hub.subscribe(KEY, projector.ask, -1, feed)
    assert (await next_answer(feed)).sequence == 1
    await asyncio.sleep(INTERVAL_MS / 1000)  # quiet for a whole interval: time is the point
    committed = time.monotonic()
    projector.commit(hub, 2)
    assert (await next_answer(feed)).sequence == 2
    waited = time.monotonic() - committed
    assert waited < INTERVAL_MS / 1000 / 3, f"the leading edge waited {waited:.3f} s"


async def test_batches_during_a_closed_interval_cost_one_evaluation_as_of_the_newest(
    hub: Hub,
) -> None:
    projector, feed = Projector(), Subscriber(interval_s=INTERVAL_MS / 1000)
    await hub.subscribe(KEY, projector.ask, -1, feed)
    assert (await next_answer(feed)).sequence == 1
    opened = time.monotonic()
    for sequence in (2, 3, 4):  # the interval opened by the first answer is still closed
        projector.commit(hub, sequence)
    answer = await next_answer(feed)
    assert answer.sequence == 4 and projector.asked == [0, 4]
    assert time.monotonic() - opened >= INTERVAL_MS / 1000 * 0.9, "the interval was kept"
