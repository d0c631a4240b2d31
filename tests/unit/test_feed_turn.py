"""One write per caught-up client per turn of the event loop (gateway/feed/turn.py), and the
tail's end-of-turn calls (gateway/feed/tail.py, `Tail.after_turn`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.tail import Tail
from gateway.feed.turn import Held
from gateway.feed.window import Item


def _item(seq: int, framed: bool = True) -> Item:
    wire = b"id: %d\ndata: {}\n\n" % seq if framed else b""
    return Item(seq, "p.events.todo_list.a", "todo_added", b"{}", wire=wire)


class To:
    """A `Writer`: its socket takes a chunk while `taking` (each recorded); what was written
    and refused, in order; `later` holds what is due until the test ends the turn."""

    def __init__(self) -> None:
        self.taking, self.chunks = True, list[bytes]()
        self.order: list[tuple[str, int]] = []
        self.due: list[Callable[[], bool]] = []

    def write(self, body: bytes) -> bool:
        if self.taking:
            self.chunks.append(body)
        return self.taking

    def written(self, items: list[Item]) -> None:
        self.order += [("w", i.seq) for i in items]

    def refused(self, items: list[Item]) -> None:
        self.order += [("r", i.seq) for i in items]

    def later(self, flush: Callable[[], bool]) -> None:
        self.due.append(flush)

    def end_turn(self) -> None:
        due, self.due = self.due, []
        for flush in due:
            flush()

    def seqs(self, kind: str) -> list[int]:
        return [seq for k, seq in self.order if k == kind]


def test_what_one_turn_hands_a_feed_is_one_write_when_the_turn_ends() -> None:
    to = To()
    held = Held(100, to)
    assert all(held.offer(_item(n)) for n in (1, 2, 3))
    assert to.chunks == [] and to.order == [] and len(to.due) == 1  # nothing yet
    to.end_turn()
    assert to.chunks == [b"".join(_item(n).wire for n in (1, 2, 3))]
    assert to.seqs("w") == [1, 2, 3]
    assert held.offer(_item(4)) and len(to.due) == 1  # the next turn's own write
    to.end_turn()
    assert to.chunks[1:] == [_item(4).wire] and len(held) == 0


def test_past_capacity_what_is_held_is_written_before_the_next_item_is_taken() -> None:
    to = To()
    held = Held(2, to)
    assert all(held.offer(_item(n)) for n in (1, 2, 3, 4, 5))
    assert to.chunks == [_item(1).wire + _item(2).wire, _item(3).wire + _item(4).wire]
    to.end_turn()
    assert to.seqs("w") == [1, 2, 3, 4, 5]


def test_a_socket_that_refuses_gets_nothing_counted_as_written_and_the_items_go_back() -> None:
    to = To()
    held = Held(2, to)
    to.taking = False
    assert held.offer(_item(1)) and held.offer(_item(2))
    assert not held.offer(_item(3))  # the full hold was refused: the caller queues 3 after them
    assert to.order == [("r", 1), ("r", 2)] and len(held) == 0
    assert not held.offer(_item(4, framed=False))  # no frame (a skipped event): never held


@given(
    steps=st.lists(
        st.sampled_from(["offer", "skipped", "flush", "turn", "block", "unblock"]), max_size=60
    ),
    capacity=st.integers(1, 5),
)
def test_every_taken_item_is_written_or_refused_once_in_order_and_bytes_match(
    steps: list[str], capacity: int
) -> None:
    """Whatever the socket and the turns do, the items `written` are exactly the bytes the
    socket took, and written + refused are the taken items, each once, in order."""
    to = To()
    held, taken, seq = Held(capacity, to), list[int](), 0
    for step in steps:
        if step in ("offer", "skipped"):
            seq += 1
            if held.offer(_item(seq, framed=step == "offer")):
                taken.append(seq)
        elif step == "flush":
            held.flush()
        elif step == "turn":
            to.end_turn()
        else:
            to.taking = step == "unblock"
    to.taking = True
    held.flush()
    assert [s for _, s in to.order] == taken
    assert b"".join(to.chunks) == b"".join(_item(s).wire for s in to.seqs("w"))


async def test_the_tail_calls_what_is_due_once_each_when_the_turn_ends_despite_a_failing_one() -> (
    None
):
    tail = Tail(cast(Any, None), "S", "p.events.>")
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("a feed's bug")

    tail.after_turn(lambda: calls.append("a"))
    tail.after_turn(failing)
    tail.after_turn(lambda: calls.append("b"))
    assert calls == []  # not within the turn that registered them
    await asyncio.sleep(0)
    assert calls == ["a", "failing", "b"]
    tail.after_turn(lambda: calls.append("c"))
    await asyncio.sleep(0)
    assert calls == ["a", "failing", "b", "c"]  # each once: the next turn's are its own
