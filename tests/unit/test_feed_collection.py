"""The gateway's full-collection policy (gateway/feed/collection.py) on CPython's collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from gateway.feed import collection
from gateway.feed.collection import Collections
from tests.support.waiting import soon

OPEN: list[int] = []  # the feeds the policy is told are open


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
async def policy() -> AsyncIterator[Collections]:
    gc.collect()
    watch = Collections(asyncio.get_running_loop(), lambda: len(OPEN))
    OPEN.clear()
    watch.start()
    yield watch
    watch.stop()
    assert gc.get_freeze_count() == 0  # everything given back to the collector


async def test_what_survives_a_full_collection_that_found_nothing_is_frozen(
    policy: Collections,
) -> None:
    kept = [object() for _ in range(100)]
    gc.collect()  # its callback schedules the freeze on the loop
    await soon(lambda: policy.frozen_with == 1)  # (other tests' policies may freeze too)
    assert gc.get_freeze_count() >= len(kept)


async def test_a_cycle_frozen_with_a_feed_is_freed_once_enough_feeds_closed(
    policy: Collections, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = 2 * collection.MIN_CLOSED
    OPEN.extend(range(feeds))
    cycle = _Cycle()
    dead = weakref.ref(cycle)
    gc.collect()
    await soon(lambda: policy.frozen_with == feeds)
    del cycle  # it dies frozen: no collection walks it
    gc.collect()
    assert dead() is not None
    for _ in range(collection.MIN_CLOSED):
        policy.closed_one()
    assert dead() is not None  # enough closed, but the round is younger than ROUND_MIN_S
    policy.closed -= collection.MIN_CLOSED  # (as if those had not closed)
    monkeypatch.setattr(collection, "ROUND_MIN_S", 0.0)
    for _ in range(collection.MIN_CLOSED - 1):
        OPEN.pop()
        policy.closed_one()
    assert dead() is not None  # fewer than the churn that unfreezes
    OPEN.pop()
    policy.closed_one()
    assert dead() is None  # unfrozen and collected
    assert gc.get_freeze_count() > 0  # what survived is frozen again
    assert policy.closed == 0 and policy.frozen_with == feeds - collection.MIN_CLOSED


async def test_a_round_ends_after_every_s_even_without_closed_feeds(
    policy: Collections, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycle = _Cycle()
    dead = weakref.ref(cycle)
    gc.collect()
    await soon(lambda: policy.frozen_with > 0)  # this policy froze (a round began)
    del cycle
    monkeypatch.setattr(collection, "EVERY_S", 0.0)
    gc.collect()  # finds nothing (the cycle is frozen): its freeze sees the round is over
    await soon(lambda: dead() is None)
