"""The live tail's routing (pure): who gets which stream message, from where, and when a
feed must go back to its own consumer (gateway/feed/tail.py)."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.tail import RING, RING_BYTES, Tail
from gateway.feed.window import Item
from tests.support.feeds import make

PREFIX = "p.events"
AGGREGATES = [("todo_list", "a"), ("todo_list", "b"), ("user_profile", "u")]
FILTERS = {
    "all": [f"{PREFIX}.>"],
    "todo_list": [f"{PREFIX}.todo_list.*"],
    "todo_list:a": [f"{PREFIX}.todo_list.a"],
    "todo_list:b,user_profile": [f"{PREFIX}.todo_list.b", f"{PREFIX}.user_profile.*"],
}
BODIES = {
    (kind, ident): make(kind, ident, 1, "todo_added", {"todo_id": "t", "text": "x"})
    if kind == "todo_list"
    else make(kind, ident, 1, "user_registered", {"name": "n", "email": "n@example.com"})
    for kind, ident in AGGREGATES
}


class Feed:
    """What the tail needs of a feed: a buffer it fills, a wake-up, a reason to leave."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.live: list[Item] | None = None
        self.capacity = capacity
        self.woken = 0
        self.reason = ""
        self.sink: Any = None

    def wake(self) -> None:
        self.woken += 1

    def left(self, reason: str) -> None:
        self.reason = reason


def _tail(last: int = 0) -> Tail:
    tail = Tail(cast(Any, None), "S", f"{PREFIX}.>")
    tail.last = last  # started after `last`, as `start` does from the stream's info
    return tail


def _wanted(topics: str, aggregate: tuple[str, str]) -> bool:
    kind, ident = aggregate
    return topics == "all" or any(t in (kind, f"{kind}:{ident}") for t in topics.split(","))


def _receive(tail: Tail, seq: int, aggregate: tuple[str, str]) -> None:
    tail.receive(seq, f"{PREFIX}.{aggregate[0]}.{aggregate[1]}", BODIES[aggregate])


@given(
    events=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=40),
    joins=st.lists(
        st.tuples(st.sampled_from(sorted(FILTERS)), st.integers(0, 40), st.integers(-5, 2)),
        min_size=1,
        max_size=6,
    ),
)
def test_a_member_gets_exactly_the_events_of_its_topics_after_its_position_in_order(
    events: list[tuple[str, str]], joins: list[tuple[str, int, int]]
) -> None:
    """Each feed joins when the tail has seen `when` events, at a position a little behind
    or ahead of the tail (its consumer's answer and the tail's arrive in any order)."""
    tail, members = _tail(), []
    for seq, aggregate in enumerate(events, start=1):
        for topics, when, offset in joins:
            if when == seq - 1:
                feed, after = Feed(), max(0, seq - 1 + offset)
                assert tail.join(feed, FILTERS[topics], after)
                members.append((feed, topics, after))
        _receive(tail, seq, aggregate)
    for feed, topics, after in members:
        assert feed.live is not None
        expected = [
            seq
            for seq, aggregate in enumerate(events, start=1)
            if seq > after and _wanted(topics, aggregate)
        ]
        assert [i.seq for i in feed.live] == expected
        assert all(i.wire.startswith(b"event: ") for i in feed.live)  # framed once, shared


def test_a_position_older_than_the_ring_cannot_join_and_a_newer_one_gets_what_it_missed() -> None:
    tail = _tail()
    for seq in range(1, RING + 6):
        _receive(tail, seq, AGGREGATES[0])
    old, recent = Feed(), Feed()
    assert not tail.join(old, FILTERS["all"], 4)
    assert old.live is None
    assert tail.join(recent, FILTERS["todo_list:a"], RING + 2)
    assert recent.live is not None
    assert [i.seq for i in recent.live] == [RING + 3, RING + 4, RING + 5]
    assert recent.woken == 1


def test_a_member_capacity_behind_leaves_with_its_reason_and_gets_nothing_more() -> None:
    tail, slow, other = _tail(), Feed(capacity=3), Feed()
    assert tail.join(slow, FILTERS["todo_list"], 0)
    assert tail.join(other, FILTERS["todo_list"], 0)
    for seq in range(1, 6):
        _receive(tail, seq, AGGREGATES[0])
    assert slow.live is None and slow.reason == "fell behind"
    assert other.live is not None and len(other.live) == 5
    assert tail.members() == 1


def test_a_hole_in_the_stream_sequence_sends_every_member_back_to_its_consumer() -> None:
    tail, feeds = _tail(), [Feed(), Feed()]
    for feed in feeds:
        assert tail.join(feed, FILTERS["all"], 0)
    _receive(tail, 1, AGGREGATES[0])
    _receive(tail, 3, AGGREGATES[0])  # 2 never came
    assert all(f.live is None and "skipped from 1 to 3" in f.reason for f in feeds)
    late = Feed()
    assert not tail.join(late, FILTERS["all"], 1)  # the tail cannot vouch for 2
    assert tail.join(late, FILTERS["all"], 3)


def test_a_member_that_closes_leaves_every_table_it_was_in() -> None:
    tail, feed = _tail(), Feed()
    assert tail.join(feed, FILTERS["todo_list:b,user_profile"], 0)
    tail.leave(feed)
    _receive(tail, 1, AGGREGATES[2])
    assert feed.live is None and feed.reason == "" and tail.members() == 0


class Writing(Feed):
    """A feed whose loop waits with a sink that takes an item when its socket is writable
    (`writable`, drawn per offer), and otherwise takes what the tail queued at `takes`."""

    def __init__(self, writable: list[bool]) -> None:
        super().__init__()
        self.writable, self.written = iter(writable), list[int]()
        self.sink = self.write

    def write(self, item: Item) -> bool:
        assert self.live == []  # only ever offered with nothing queued before it
        if next(self.writable, True):
            self.written.append(item.seq)
            return True
        return False

    def take(self) -> None:
        assert self.live is not None
        self.written += [i.seq for i in self.live]
        self.live.clear()


@given(
    events=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=40),
    writable=st.lists(st.booleans(), max_size=40),
    takes=st.sets(st.integers(0, 40)),
    topics=st.sampled_from(sorted(FILTERS)),
)
def test_a_sink_and_the_loop_together_write_each_event_of_the_topics_once_in_order(
    events: list[tuple[str, str]], writable: list[bool], takes: set[int], topics: str
) -> None:
    """A socket that stops taking frames (not drained) queues them for the loop; the sink is
    offered the next one only once the loop took the queue: no event twice, none ahead."""
    tail, feed = _tail(), Writing(writable)
    assert tail.join(feed, FILTERS[topics], 0)
    for seq, aggregate in enumerate(events, start=1):
        _receive(tail, seq, aggregate)
        if seq in takes:
            feed.take()
    feed.take()
    expected = [seq for seq, a in enumerate(events, start=1) if _wanted(topics, a)]
    assert feed.written == expected


def test_a_returning_feed_far_behind_within_the_ring_gets_exactly_its_missed_events() -> None:
    """After a gateway restart its clients join hundreds of events behind (issue 15)."""
    tail = _tail()
    events = [AGGREGATES[n % 3] for n in range(300)]  # more than the ring of issue 15's start
    for seq, aggregate in enumerate(events, start=1):
        _receive(tail, seq, aggregate)
    for topics in FILTERS:
        feed = Feed()
        assert tail.join(feed, FILTERS[topics], 7)
        expected = [s for s, a in enumerate(events, start=1) if s > 7 and _wanted(topics, a)]
        assert feed.live is not None
        assert [i.seq for i in feed.live] == expected
        tail.leave(feed)


def test_the_ring_keeps_at_most_its_bytes_of_large_events_and_older_positions_cannot_join() -> None:
    tail, body = (
        _tail(),
        make("todo_list", "a", 1, "todo_added", {"todo_id": "t", "text": "z" * 4000}),
    )
    for seq in range(1, 1001):
        tail.receive(seq, f"{PREFIX}.todo_list.a", body)
    held = sum(len(i.data) + len(i.wire) for i in tail.ring)
    assert held <= RING_BYTES and len(tail.ring) < 1000
    first = tail.ring[0].seq
    assert [i.seq for i in tail.ring] == list(range(first, 1001))
    assert not tail.join(Feed(), FILTERS["all"], first - 2)
    assert tail.join(Feed(), FILTERS["all"], first - 1)
