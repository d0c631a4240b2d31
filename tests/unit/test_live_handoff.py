"""A shared evaluation outlives its owner (`gateway/live/hub.py`): when the principal whose
subscribe started a key leaves, the others keep getting answers and the key is charged to
the feed that has followed it longest."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from gateway.live.answer import Answer, Subscriber
from gateway.live.hub import Hub, Key
from gateway.security.grants import PRINCIPAL, SQL, Principal

OWNER, OTHER, THIRD = (Principal(name, auth=True) for name in ("owner", "other", "third"))
KEY: Key = (SQL, SQL, '{"sql": "SELECT count(*) FROM todos"}', "owner")


class Projector:
    """Answers each evaluation with the sequence it is told; records who asked."""

    def __init__(self) -> None:
        self.sequence = 1
        self.asked_by: list[str] = []
        self.gate = asyncio.Event()  # cleared: evaluations wait for it
        self.gate.set()
        self.entered = asyncio.Event()  # an evaluation is running

    async def ask(self, min_seq: int, left_s: float) -> bytes:
        self.entered.set()
        await self.gate.wait()
        self.asked_by.append(PRINCIPAL.get().key)
        body = {"sequence": self.sequence, "result": self.sequence, "reads": ["todos"]}
        return json.dumps(body).encode()


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    live = Hub(4, max_queries=10, total=10, per_principal=10)
    yield live
    tasks = [e.task for e in live.evaluations.values() if e.task is not None]
    for evaluation in live.evaluations.values():
        evaluation.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def next_answer(subscriber: Subscriber) -> Answer:
    async with asyncio.timeout(5):
        while (answer := subscriber.take()) is None:
            await subscriber.wake.wait()
            subscriber.wake.clear()
    return answer


async def commit(hub: Hub, projector: Projector, sequence: int) -> None:
    projector.sequence = sequence
    for evaluation in list(hub.evaluations.values()):
        evaluation.announce(sequence, frozenset({"todos"}))


async def test_when_the_owner_leaves_the_others_keep_getting_answers_charged_to_the_next(
    hub: Hub,
) -> None:
    projector = Projector()
    first, second, third = (Subscriber(interval_s=0.001) for _ in range(3))
    await hub.subscribe(KEY, projector.ask, -1, first, OWNER)
    await hub.subscribe(KEY, projector.ask, -1, second, OTHER)
    await hub.subscribe(KEY, projector.ask, -1, third, THIRD)
    assert (await next_answer(second)).sequence == 1
    hub.leave(KEY, first)
    assert dict(hub.lanes.owned) == {OTHER.key: 1}
    await commit(hub, projector, 2)
    assert (await next_answer(second)).sequence == 2
    assert (await next_answer(third)).sequence == 2
    assert projector.asked_by == [OWNER.key, OTHER.key]  # SQL runs as whoever owns it now
    hub.leave(KEY, second)
    assert dict(hub.lanes.owned) == {THIRD.key: 1}
    await commit(hub, projector, 3)
    assert (await next_answer(third)).sequence == 3
    hub.leave(KEY, third)
    assert not hub.evaluations and not hub.lanes.owned


async def test_an_owner_with_another_feed_of_the_key_keeps_it(hub: Hub) -> None:
    projector = Projector()
    mine, also_mine, theirs = (Subscriber(interval_s=0.001) for _ in range(3))
    for subscriber, principal in ((mine, OWNER), (theirs, OTHER), (also_mine, OWNER)):
        await hub.subscribe(KEY, projector.ask, -1, subscriber, principal)
    hub.leave(KEY, mine)
    assert dict(hub.lanes.owned) == {OWNER.key: 1}
    hub.leave(KEY, also_mine)
    assert dict(hub.lanes.owned) == {OTHER.key: 1}


async def test_a_key_left_to_a_dashboard_views_feed_is_charged_to_no_one(hub: Hub) -> None:
    projector = Projector()
    key: Key = ("stream", "totals", "{}", "")
    owners, view = (Subscriber(interval_s=0.001) for _ in range(2))
    await hub.subscribe(key, projector.ask, -1, owners, OWNER)
    await hub.subscribe(key, projector.ask, -1, view, None)
    assert (await next_answer(view)).sequence == 1
    hub.leave(key, owners)
    assert not hub.lanes.owned
    await commit(hub, projector, 2)
    assert (await next_answer(view)).sequence == 2


async def test_an_owner_that_leaves_during_the_first_evaluation_leaves_it_to_the_others(
    hub: Hub,
) -> None:
    projector = Projector()
    projector.gate.clear()  # the first evaluation is still running
    first, second = (Subscriber(interval_s=0.001) for _ in range(2))
    owner = asyncio.create_task(hub.subscribe(KEY, projector.ask, -1, first, OWNER))
    joiner = asyncio.create_task(hub.subscribe(KEY, projector.ask, -1, second, OTHER))
    async with asyncio.timeout(5):
        await projector.entered.wait()  # the tasks run in order: both have joined by now
    assert list(hub.evaluations[KEY].subscribers) == [first, second]
    owner.cancel()  # the owner's client went away
    with pytest.raises(asyncio.CancelledError):
        await owner
    projector.gate.set()
    await joiner
    assert (await next_answer(second)).sequence == 1
    assert dict(hub.lanes.owned) == {OTHER.key: 1}
    await commit(hub, projector, 2)
    assert (await next_answer(second)).sequence == 2


async def test_a_joiner_with_a_far_ahead_min_seq_does_not_hold_the_key_for_the_others(
    hub: Hub,
) -> None:
    """attack17b B4: the joiner waits (504 at its own deadline); the key stays due only as
    far as was announced, so its other feeds keep getting every batch's answer."""
    projector, first, joiner = Projector(), Subscriber(), Subscriber(10**9)
    asked: list[int] = []

    async def ask(min_seq: int, left_s: float) -> bytes:
        asked.append(min_seq)
        return await projector.ask(min_seq, left_s)

    await hub.rounds.hear(1)
    PRINCIPAL.set(OWNER)
    await hub.subscribe(KEY, ask, -1, first, OWNER)
    assert (await next_answer(first)).sequence == 1
    far = asyncio.create_task(
        hub.subscribe(KEY, ask, 10**9, joiner, OTHER, time.monotonic() + 0.5, 10**9)
    )
    await hub.rounds.hear(2)
    await commit(hub, projector, 2)
    assert (await next_answer(first)).sequence == 2  # the key was not held at 10**9
    assert max(asked) < 10**9
    with pytest.raises(Exception, match="did not reach sequence"):
        await far
