"""The live hub's fairness (`gateway/live/hub.py`, `gateway/live/lanes.py`): lanes, each owner's
half of a lane, waits bounded by a deadline, each owner's share of the distinct keys."""

from __future__ import annotations

import asyncio
import time

import pytest

from common.errors import TooManyRequests
from gateway.live.answer import Subscriber
from gateway.live.hub import Hub, Key
from gateway.live.lanes import SQL_LANE
from gateway.security.grants import SQL, Principal

HOG, OTHER = Principal("hog", auth=True), Principal("other", auth=True)


def hub(concurrency: int = 4, per_owner: int = 3) -> Hub:
    return Hub(concurrency, max_queries=100, total=100, per_principal=100, per_owner=per_owner)


def soon(seconds: float = 0.2) -> float:
    return time.monotonic() + seconds


async def fill(live: Hub, lane: str, owner: Principal | None, count: int) -> list[object]:
    """`count` slots of `lane` held by `owner` (entered context managers)."""
    held = []
    for _ in range(count):
        slot = live.lanes.slot(lane, owner, soon())
        await slot.__aenter__()
        held.append(slot)
    return held


async def test_one_owner_runs_at_most_half_a_lane_and_others_still_get_slots() -> None:
    live = hub(concurrency=4)
    live.lanes.own(HOG, +1)
    live.lanes.own(OTHER, +1)
    held = await fill(live, SQL_LANE, HOG, 2)
    with pytest.raises(TooManyRequests) as refused:
        await fill(live, SQL_LANE, HOG, 1)
    assert refused.value.detail["retry_after"] == 1
    held += await fill(live, SQL_LANE, OTHER, 2)  # the other half is the others'
    assert len(held) == 4


@pytest.mark.parametrize("concurrency", [1, 2, 3, 5])
async def test_an_owner_gets_at_least_one_slot_whatever_the_concurrency(concurrency: int) -> None:
    live = hub(concurrency=concurrency)
    live.lanes.own(HOG, +1)
    await fill(live, SQL_LANE, HOG, max(1, concurrency // 2))


async def test_a_full_sql_lane_leaves_catalogue_queries_free() -> None:
    live = hub(concurrency=2, per_owner=10)
    live.lanes.own(HOG, +1)
    live.lanes.own(OTHER, +1)
    held = await fill(live, SQL_LANE, HOG, 1) + await fill(live, SQL_LANE, OTHER, 1)

    async def ask(min_seq: int, left_s: float) -> bytes:
        return b'{"sequence": 1, "result": 1}'

    started = time.monotonic()
    for n in range(8):  # catalogue keys take no slot: their unit is the round
        key: Key = ("stream", "events_per_minute", f'{{"minutes": {n}}}', "")
        await live.subscribe(key, ask, -1, Subscriber(), HOG, deadline=soon(0.3))
    assert time.monotonic() - started < 0.3 and len(held) == 2
    for evaluation in list(live.evaluations.values()):
        evaluation.close()


async def test_a_wait_for_a_slot_ends_at_its_deadline_with_a_429() -> None:
    live = hub(concurrency=1)
    held = await fill(live, SQL_LANE, None, live.lanes.size[SQL_LANE])
    started = time.monotonic()
    with pytest.raises(TooManyRequests):
        async with live.lanes.slot(SQL_LANE, None, soon(0.3)):
            pass
    assert 0.25 < time.monotonic() - started < 1
    assert held


async def test_an_owner_starts_a_bounded_number_of_distinct_keys_and_views_are_free() -> None:
    live = hub(per_owner=2)

    async def ask(min_seq: int, left_s: float) -> bytes:
        return b'{"sequence": 1, "result": 1}'

    def key(n: int) -> Key:
        return (SQL, SQL, f'{{"sql": "SELECT {n}"}}', HOG.key)

    mine = [Subscriber() for _ in range(3)]
    for n in range(2):
        await live.subscribe(key(n), ask, -1, mine[n], HOG)
    with pytest.raises(TooManyRequests) as refused:
        await live.subscribe(key(2), ask, -1, mine[2], HOG)
    assert refused.value.detail["retry_after"] == 5
    joiner = Subscriber()
    await live.subscribe(key(0), ask, -1, joiner, HOG)  # joining costs nothing
    await live.subscribe(("analytics", "totals", "{}", ""), ask, -1, Subscriber(), None)
    live.leave(key(0), mine[0])
    with pytest.raises(TooManyRequests):  # key(0) still has a subscriber
        await live.subscribe(key(2), ask, -1, mine[2], HOG)
    live.leave(key(0), joiner)
    await live.subscribe(key(2), ask, -1, mine[2], HOG)  # its share came back
    assert live.lanes.owned[HOG.key] == 2
    tasks = [e.task for e in live.evaluations.values() if e.task is not None]
    for evaluation in live.evaluations.values():
        evaluation.close()
    await asyncio.gather(*tasks, return_exceptions=True)  # each ended by its cancellation
