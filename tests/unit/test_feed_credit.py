"""The process's budget of events in flight to catching-up feeds (gateway/feed/credit.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.credit import Credit


class Feed:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def test_a_feed_gets_what_is_left_of_the_budget_and_nothing_past_it() -> None:
    credit, a, b = Credit(100), Feed(), Feed()
    assert credit.take(64, a) == 64
    assert credit.take(64, b) == 36
    assert credit.take(1, a) == 0
    assert credit.out == 100


def test_feeds_refused_are_woken_first_come_first_served_as_deliveries_arrive() -> None:
    credit, first, second = Credit(16), Feed(), Feed()
    credit.take(16, Feed())
    assert (credit.take(8, first), credit.take(8, second)) == (0, 0)
    credit.give(1)  # less than a woken feed's share (2): nobody woken yet
    assert (first.woken, second.woken) == (0, 0)
    credit.give(1)
    assert (first.woken, second.woken) == (1, 0)
    credit.give(2)
    assert second.woken == 1
    assert credit.take(8, first) == 2  # what is free besides second's promised share


def test_a_woken_feed_that_closes_frees_its_share_for_the_next() -> None:
    credit, gone, next_ = Credit(8), Feed(), Feed()
    credit.take(8, Feed())
    credit.take(4, gone)
    credit.take(4, next_)
    credit.give(1)  # share 1: gone is woken and promised it
    assert gone.woken == 1 and next_.woken == 0
    credit.forget(gone)
    assert next_.woken == 1


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 300)), max_size=200))
def test_events_in_flight_never_pass_the_budget(steps: list[tuple[int, int]]) -> None:
    credit, feeds = Credit(500), [Feed() for _ in range(3)]
    held = [0, 0, 0]
    for who, count in steps:
        if who < 3:
            got = credit.take(count, feeds[who])
            held[who] += got
        else:
            back = held.index(max(held))
            credit.give(held[back])
            held[back] = 0
        assert 0 <= credit.out == sum(held) <= credit.limit
