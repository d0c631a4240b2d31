"""The gateway's full-collection policy (gateway/feed/collection.py) on CPython's collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.feed import collection
from gateway.feed.collection import Collections
from tests.support.waiting import soon

OPEN: list[int] = []  # the feeds the policy is told are open
BLOCKS = [500_000]  # the allocated blocks it is told


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
async def policy() -> AsyncIterator[Collections]:
    gc.collect()
    before = gc.get_threshold()
    OPEN.clear()
    BLOCKS[:] = [500_000]
    watch = Collections(asyncio.get_running_loop(), lambda: len(OPEN), lambda: BLOCKS[0])
    watch.start()
    yield watch
    watch.stop()
    assert gc.get_threshold() == before  # the oldest generation is CPython's again


def _dead_in_the_oldest_generation() -> Callable[[], object]:
    """A reference cycle that dies after young collections promoted it: only a full
    collection frees it (a weak reference to it)."""
    cycle = _Cycle()
    dead = weakref.ref(cycle)
    gc.collect(1)  # survivors of the young generations move to the oldest
    del cycle
    return dead


def _allocate() -> None:
    """Allocate like a busy process: enough long-lived containers that CPython's own rule
    starts full collections (more than `threshold[2]` young collections of the middle one,
    promoting more than a quarter of what the oldest holds)."""
    kept = [[] for _ in range(2_000_000)]
    del kept


async def test_the_oldest_generation_is_never_collected_by_cpythons_rule(
    policy: Collections,
) -> None:
    assert gc.get_threshold()[2] == collection.NEVER
    dead = _dead_in_the_oldest_generation()
    _allocate()
    assert dead() is not None  # young collections do not walk it
    policy.stop()  # CPython's rule again: the same allocations collect it
    _allocate()
    assert dead() is None
    policy.start()


async def test_a_cycle_of_the_oldest_generation_is_freed_once_enough_feeds_closed(
    policy: Collections, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = 2 * collection.MIN_CLOSED
    OPEN.extend(range(feeds))
    policy.round()  # the last round saw them open
    dead = _dead_in_the_oldest_generation()
    for _ in range(collection.MIN_CLOSED):
        OPEN.pop()
        policy.closed_one()
    assert dead() is not None  # enough closed, but the last round is younger than ROUND_MIN_S
    policy.closed -= collection.MIN_CLOSED  # (as if those had not closed)
    monkeypatch.setattr(collection, "ROUND_MIN_S", 0.0)
    for _ in range(collection.MIN_CLOSED - 1):
        policy.closed_one()
    assert dead() is not None  # fewer than the churn that starts a round
    policy.closed_one()
    assert dead() is None  # collected
    assert policy.closed == 0 and policy.open_then == feeds - collection.MIN_CLOSED


async def test_what_is_new_is_collected_and_frozen_when_the_allocated_blocks_grew(
    policy: Collections,
) -> None:
    dead = _dead_in_the_oldest_generation()
    kept = _Cycle()  # alive at the collection: frozen with the survivors
    frozen = weakref.ref(kept)
    BLOCKS[0] = 500_000 + collection.MIN_GROWTH - 1  # more than GROWTH, not MIN_GROWTH
    assert collection.MIN_GROWTH - 1 > collection.GROWTH * 500_000
    policy.check()
    assert dead() is not None
    BLOCKS[0] = 2_000_000
    policy.check()
    assert dead() is None and policy.blocks_then == 2_000_000  # the next counts from here
    del kept
    BLOCKS[0] = 3_000_000
    policy.check()
    assert frozen() is not None  # died frozen: only a full round walks it again
    policy.round()
    assert frozen() is None


async def test_closed_feeds_too_soon_after_a_round_start_one_at_a_later_check(
    policy: Collections, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy.closed = collection.MIN_CLOSED
    dead = _dead_in_the_oldest_generation()
    policy.check()
    assert dead() is not None  # younger than ROUND_MIN_S
    monkeypatch.setattr(collection, "ROUND_MIN_S", 0.0)
    policy.check()
    assert dead() is None


async def test_a_round_starts_every_s_after_the_last_even_without_closed_feeds(
    policy: Collections, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "CHECK_S", 0.01)
    policy.stop()
    policy.start()  # its timer checks every 10 ms from now on
    dead = _dead_in_the_oldest_generation()
    monkeypatch.setattr(collection, "EVERY_S", 0.0)
    await soon(lambda: dead() is None)
