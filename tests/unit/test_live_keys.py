"""A live key's budget and its joiners (`gateway/live/hub.py`, `gateway/live/lanes.py`), on
the real Hub: the interval is no part of a key (feeds asking different intervals share one
evaluation, run at the fastest); the dashboard's views are never refused because principals
filled the distinct keys; a few principals cannot take the last keys from the others; a
joiner that needs a newer answer than the one held gets it at once, not at the key's timer."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from common.errors import TooManyRequests
from gateway.live.answer import Answer, Subscriber
from gateway.live.follow import key_of
from gateway.live.hub import Hub, Key
from gateway.security.grants import SQL, Principal
from tests.support.waiting import eventually
from tests.unit.test_live_handoff import hub, next_answer
from tests.unit.test_live_throttle import Projector

__all__ = ["hub"]  # the fixture, shared with the handoff's tests


def totals() -> Key:
    return ("stream", "totals", "{}", "")


def lists(n: int) -> Key:
    return ("todo_lists", "get", json.dumps({"list_id": f"l{n}"}), "")


async def test_feeds_that_differ_only_in_interval_share_one_evaluation(hub: Hub) -> None:
    projector = Projector()
    feeds = [Subscriber(interval_s=ms / 1000) for ms in (2000, 2001, 2002, 50)]
    for n, feed in enumerate(feeds):
        await hub.subscribe(totals(), projector.ask, -1, feed, Principal(f"p{n}", auth=True))
    assert len(hub.evaluations) == 1 and projector.asked == [0]
    assert hub.evaluations[totals()].interval_s() == 0.05  # the fastest asked


async def test_principals_that_fill_the_keys_never_shut_the_dashboard_views_out() -> None:
    live = Hub(4, max_queries=8, total=100, per_principal=100, per_owner=8)
    projector = Projector()
    started = 0
    for p in range(8):  # as many principals as it takes
        for n in range(8):
            try:
                await live.subscribe(
                    lists(p * 8 + n), projector.ask, -1, Subscriber(), Principal(f"m{p}", auth=True)
                )
                started += 1
            except TooManyRequests:
                pass
    assert started == 8 and live.lanes.owned.total() == 8
    with pytest.raises(TooManyRequests):
        await live.subscribe(
            lists(99), projector.ask, -1, Subscriber(), Principal("late", auth=True)
        )
    for n in range(8):  # the views' keys are counted apart: all still start
        await live.subscribe(("view", f"v{n}", "{}", ""), projector.ask, -1, Subscriber(), None)
    with pytest.raises(TooManyRequests) as refused:  # and are bounded themselves
        await live.subscribe(("view", "v9", "{}", ""), projector.ask, -1, Subscriber(), None)
    assert refused.value.detail["limit"] == "live_views"
    for evaluation in list(live.evaluations.values()):
        evaluation.close()


async def test_a_principal_starts_a_key_only_while_it_holds_fewer_than_remain_free() -> None:
    live = Hub(4, max_queries=16, total=100, per_principal=100, per_owner=16)
    projector = Projector()
    hog, other = Principal("hog", auth=True), Principal("other", auth=True)
    with pytest.raises(TooManyRequests) as refused:
        for n in range(16):
            await live.subscribe(lists(n), projector.ask, -1, Subscriber(), hog)
    assert refused.value.detail["limit"] == "live_queries_share"
    assert live.lanes.owned[hog.key] == 8  # half: the rest are the others'
    await live.subscribe(lists(100), projector.ask, -1, Subscriber(), other)
    for evaluation in list(live.evaluations.values()):
        evaluation.close()


async def test_a_joiner_resuming_past_the_held_answer_gets_one_at_once_not_at_the_timer(
    hub: Hub,
) -> None:
    projector, first = Projector(), Subscriber(interval_s=60)
    await hub.subscribe(totals(), projector.ask, -1, first)
    assert (await next_answer(first)).sequence == 1
    projector.commit(hub, 2)  # the key's interval (a minute) is closed: not evaluated yet
    projector.sequence = 4  # the read model is at 4; the joiner holds 4 already
    joiner, joined = Subscriber(4, interval_s=60), time.monotonic()
    await hub.subscribe(totals(), projector.ask, 4, joiner)
    assert (await next_answer(joiner)).sequence == 4
    assert time.monotonic() - joined < 2, "the joiner waited for the key's timer"


async def test_a_joiner_with_min_seq_past_the_held_answer_is_answered_not_504(hub: Hub) -> None:
    projector, first = Projector(), Subscriber(interval_s=60)
    await hub.subscribe(totals(), projector.ask, -1, first)
    assert (await next_answer(first)).sequence == 1
    projector.sequence = 3
    joiner = Subscriber(3, interval_s=60)
    await hub.subscribe(
        totals(), projector.ask, 3, joiner, deadline=time.monotonic() + 2, min_seq=3
    )
    assert (await next_answer(joiner)).sequence == 3
    assert projector.asked[-1] == 3


async def test_a_joiner_the_held_answer_satisfies_costs_no_evaluation(hub: Hub) -> None:
    projector, first = Projector(), Subscriber(interval_s=60)
    await hub.subscribe(totals(), projector.ask, -1, first)
    joiner = Subscriber(1, interval_s=60)
    await hub.subscribe(totals(), projector.ask, 1, joiner, min_seq=1)
    assert (await next_answer(joiner)).sequence == 1
    assert projector.asked == [0]


def test_sql_keys_are_each_principals_own_and_catalogue_keys_shared() -> None:
    sql = {"sql": "SELECT event_type, sum(events) AS n FROM stream_counts GROUP BY ALL"}
    assert key_of(SQL, SQL, sql, "mal1") != key_of(SQL, SQL, sql, "victim")
    assert key_of(SQL, SQL, sql, "victim") == key_of(SQL, SQL, dict(sql), "victim")
    assert key_of("stream", "totals", {}, "mal1") == key_of("stream", "totals", {}, "victim")


async def test_a_min_seq_announced_after_the_joiner_came_is_answered_at_once_not_at_the_timer(
    hub: Hub,
) -> None:
    """attack17c M1: read-your-writes right after a POST, on a key with a long interval."""
    projector, first = Projector(), Subscriber(interval_s=60)
    await hub.rounds.hear(1)
    await hub.subscribe(totals(), projector.ask, -1, first)
    assert (await next_answer(first)).sequence == 1
    joiner, joined = Subscriber(2, interval_s=60), time.monotonic()
    waiting = asyncio.create_task(
        hub.subscribe(totals(), projector.ask, 2, joiner, deadline=joined + 5, min_seq=2)
    )

    async def awaited() -> list[int]:
        return hub.evaluations[totals()].awaited

    await eventually(awaited, lambda seqs: seqs == [2])  # the joiner waits: 2 not announced
    await hub.rounds.hear(2)
    projector.commit(hub, 2)
    await waiting
    assert (await next_answer(joiner)).sequence == 2
    assert time.monotonic() - joined < 2, "the joiner waited for the key's minute"
    assert hub.evaluations[totals()].awaited == []


async def test_a_keys_creator_with_a_far_ahead_min_seq_holds_no_one_else(hub: Hub) -> None:
    """attack17c M2: the first subscriber of a key is a joiner like any other: its own
    far-ahead `min_seq` is a 504 to itself alone; the others get the current answer."""
    projector = Projector()
    await hub.rounds.hear(1)
    far = asyncio.create_task(
        hub.subscribe(
            totals(), projector.ask, 10**9, Subscriber(10**9), None, time.monotonic() + 0.5, 10**9
        )
    )

    async def started() -> bool:
        return totals() in hub.evaluations

    await eventually(started, bool)  # the creator's key exists: the other joins it
    other = Subscriber()
    await hub.subscribe(totals(), projector.ask, -1, other)
    assert (await next_answer(other)).sequence == 1
    assert max(projector.asked) < 10**9
    with pytest.raises(Exception, match="did not reach sequence"):
        await far


def test_a_failure_not_written_yet_is_superseded_by_a_newer_answer_and_supersedes_an_older() -> (
    None
):
    """attack17c L1: never an error frame right before the answer that ended it; an answer
    held from before a failure is not written after it (it would clear the error)."""
    feed = Subscriber()
    feed.offer(Answer(1, 0, {"result": 1}))
    feed.fail("bad_request", "the query failed")
    assert feed.latest is None and feed.error is not None
    feed.offer(Answer(2, 1, {"result": 2}))
    assert feed.error is None and feed.latest is not None and feed.latest.sequence == 2
