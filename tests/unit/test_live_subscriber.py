"""A live subscriber's place (pure): answers only go forward, never below its resume point,
each changed result once, and a reader that takes late gets only the latest."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.live.answer import Answer, Subscriber


def _answers(draws: list[tuple[int, int]]) -> list[Answer]:
    return [Answer(sequence, version, {"sequence": sequence}) for sequence, version in draws]


@given(
    after=st.integers(-1, 50),
    offers=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 5)), max_size=40),
    reads=st.lists(st.booleans(), max_size=40),
)
def test_taken_answers_go_forward_from_the_resume_point_each_version_once(
    after: int, offers: list[tuple[int, int]], reads: list[bool]
) -> None:
    me = Subscriber(after)
    taken: list[Answer] = []
    for answer, read in zip(_answers(offers), reads + [True] * len(offers), strict=False):
        me.offer(answer)
        if read:  # a reader that skips turns is slow: it takes whatever is latest later
            found = me.take()
            if found is not None:
                taken.append(found)
    sequences = [a.sequence for a in taken]
    assert sequences == sorted(sequences), "never older after newer"
    assert all(s >= after for s in sequences), "never older than the client's Last-Event-ID"
    versions = [a.version for a in taken]
    assert all(a != b for a, b in pairwise(versions)), "only changes"


def test_a_slow_reader_gets_only_the_latest_of_what_came_meanwhile() -> None:
    me = Subscriber()
    for answer in _answers([(1, 0), (2, 1), (3, 2)]):
        me.offer(answer)
    latest = me.take()
    assert latest is not None and latest.sequence == 3
    assert me.take() is None
