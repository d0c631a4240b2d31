"""The gateway's full-collection policy (gateway/feed/collection.py) on CPython's collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.feed import collection
from gateway.feed.collection import Collections, resident_bytes
from tests.support.waiting import soon

OPEN: list[int] = []  # the feeds the policy is told are open
MEMORY = [100 << 20]  # the resident bytes it is told


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
async def policy() -> AsyncIterator[Collections]:
    gc.collect()
    before = gc.get_threshold()
    OPEN.clear()
    MEMORY[:] = [100 << 20]
    watch = Collections(asyncio.get_running_loop(), lambda: len(OPEN), lambda: MEMORY[0])
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


async def test_a_round_starts_when_resident_memory_grew_by_a_quarter(
    policy: Collections,
) -> None:
    dead = _dead_in_the_oldest_generation()
    MEMORY[0] = (100 << 20) + (63 << 20)  # grown by more than a quarter, less than MIN_GROWTH
    policy.check()
    assert dead() is not None
    MEMORY[0] = (100 << 20) + (64 << 20)
    policy.check()
    assert dead() is None
    assert policy.memory_then == (100 << 20) + (64 << 20)  # the next round counts from here


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


def test_resident_memory_is_read_in_bytes() -> None:
    ballast = bytearray(64 << 20)  # touched: resident
    assert resident_bytes() > len(ballast)
