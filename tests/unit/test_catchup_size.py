"""Catch-up batches sized to the aggregates a history has (projector/feed.py:
`catchup_size`): twice the aggregates known, between the floor and the cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projector.feed import PER_AGGREGATE, catchup_size

counts = st.integers(min_value=0, max_value=10_000_000)


@given(counts, counts, counts)
def test_a_catch_up_batch_holds_twice_the_aggregates_within_the_floor_and_the_cap(
    aggregates: int, floor: int, cap: int
) -> None:
    size = catchup_size(aggregates, floor, cap)
    assert floor <= size <= max(floor, cap)
    if floor <= PER_AGGREGATE * aggregates <= cap:
        assert size == PER_AGGREGATE * aggregates


@given(counts, counts, st.integers(min_value=1, max_value=10_000_000))
def test_a_catch_up_batch_never_shrinks_as_the_aggregates_grow(
    aggregates: int, more: int, floor: int
) -> None:
    cap = 4 * floor
    assert catchup_size(aggregates, floor, cap) <= catchup_size(aggregates + more, floor, cap)


def test_the_bench_history_at_5m_events_gets_batches_of_250_000_by_default() -> None:
    # 25,000 lists and 100,000 users: each list ~8 events a batch, as at 1M with 50,000
    assert catchup_size(125_000, 50_000, 250_000) == 250_000
    assert catchup_size(25_000, 50_000, 250_000) == 50_000  # the 1M history: as before
    assert catchup_size(10**6, 50_000, 250_000) == 250_000  # memory bounded by the cap
