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


def test_after_an_error_the_next_answer_is_written_even_if_its_result_did_not_change() -> None:
    me = Subscriber()
    me.offer(Answer(5, 1, {"sequence": 5}))
    assert me.take() is not None
    me.fail("too_large", "the answer is over 1 MB")
    me.offer(Answer(7, 1, {"sequence": 7}))  # back to the result written before the error
    recovered = me.take()
    assert recovered is not None and recovered.sequence == 7


@given(
    interval_ms=st.integers(50, 1000),
    key_every_ms=st.integers(10, 1000),
    write_lag_ms=st.lists(st.integers(0, 40), min_size=1, max_size=5),
)
def test_a_feed_gets_one_answer_per_its_interval_on_average_beside_a_faster_key(
    interval_ms: int, key_every_ms: int, write_lag_ms: list[int]
) -> None:
    """A key answering every `key_every_ms` (a faster feed's pace), a feed of `interval_ms`
    whose writes lag by a few ms: over 20 s it writes at most one per interval (+1), never
    two closer than half of it."""
    me = Subscriber(interval_s=interval_ms / 1000)
    writes: list[float] = []
    now, made, sequence = 0.0, 0.0, 0
    while now < 20:
        sequence += 1
        made = sequence * key_every_ms / 1000
        me.offer(Answer(sequence, sequence, {"sequence": sequence}, asked_at=made))
        now = max(made, me.next_at) + write_lag_ms[sequence % len(write_lag_ms)] / 1000
        if now < (sequence + 1) * key_every_ms / 1000 or me.next_at <= made:
            answer = me.take()
            if answer is not None:
                writes.append(now)
                me.pace(answer, now)
    gaps = [b - a for a, b in pairwise(writes)]
    assert all(gap >= interval_ms / 2000 - 1e-9 for gap in gaps), min(gaps)
    assert len(writes) <= writes[-1] / (interval_ms / 1000) + 2, (len(writes), writes[-1])


@given(
    interval_ms=st.integers(50, 1000),
    round_share=st.lists(st.floats(0, 0.24), min_size=2, max_size=40),
    write_lag=st.lists(st.floats(0, 0.24), min_size=1, max_size=5),
)
def test_a_feed_at_its_keys_pace_is_never_held_whatever_its_rounds_took(
    interval_ms: int, round_share: list[float], write_lag: list[float]
) -> None:
    """A key evaluated every interval (from each evaluation's start) whose rounds take
    different times (each under a quarter of the interval), a feed of the same interval
    whose writes lag up to a quarter of it: every answer is written when it arrives, never
    held for the feed's pace (paced by the answers' arrival, a round quicker than the one
    before held the write)."""
    interval = interval_ms / 1000
    me = Subscriber(interval_s=interval)
    asked = 0.0
    for n, share in enumerate(round_share):
        arrived = asked + share * interval
        me.offer(Answer(n, n, {"sequence": n}, asked_at=asked))
        assert me.next_at <= arrived, (n, me.next_at, arrived)
        answer = me.take()
        assert answer is not None
        me.pace(answer, arrived + write_lag[n % len(write_lag)] * interval)
        asked += interval  # the key's next evaluation starts an interval after this one
