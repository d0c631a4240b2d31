"""A key's answer reaches its subscribers a turn of the event loop at a time
(`gateway/live/turns.py`): sockets are read between turns, and a newer answer that comes
mid-way reaches everyone, the older never after it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.live.answer import Answer, Subscriber
from gateway.live.turns import TURN, Offers
from tests.support.waiting import eventually

FEEDS = 10 * TURN


@dataclass(eq=False)
class Key:
    answer: Answer | None = None
    subscribers: dict[Subscriber, None] = field(default_factory=dict)


def key_of(feeds: int) -> Key:
    return Key(Answer(1, 1, {"sequence": 1}), {Subscriber(): None for _ in range(feeds)})


def offered(key: Key, answer: Answer | None = None) -> int:
    want = answer or key.answer
    return sum(one.latest is want for one in key.subscribers)


async def all_offered(key: Key) -> None:
    async def count() -> int:
        return offered(key)

    await eventually(count, lambda n: n == len(key.subscribers), timeout=5, every=0)


async def test_a_socket_ready_during_a_fan_out_is_served_before_it_ends() -> None:
    key, offers = key_of(FEEDS), Offers()
    offers.offer(key)
    served: list[int] = []
    asyncio.get_running_loop().call_soon(lambda: served.append(offered(key)))  # a socket's turn
    await all_offered(key)
    assert served and served[0] <= TURN, served  # not behind all 1,000 feeds


async def test_a_newer_answer_mid_way_reaches_every_feed_the_older_never_after_it() -> None:
    key, offers = key_of(FEEDS), Offers()
    offers.offer(key)
    await asyncio.sleep(0)  # some feeds hold the first answer, most not yet
    assert 0 < offered(key) < FEEDS
    key.answer = Answer(2, 2, {"sequence": 2})
    offers.offer(key)
    await all_offered(key)
    for _ in range(FEEDS // TURN + 2):  # the rest of the first fan-out, had it gone on
        await asyncio.sleep(0)
    assert offered(key) == FEEDS


async def test_a_feed_that_left_mid_fan_out_is_offered_nothing() -> None:
    key, offers = key_of(FEEDS), Offers()
    last = list(key.subscribers)[-1]
    offers.offer(key)
    del key.subscribers[last]
    await all_offered(key)
    assert last.latest is None


async def test_keys_are_fanned_out_in_the_order_their_answers_came() -> None:
    first, second, offers = key_of(TURN), key_of(TURN), Offers()
    offers.offer(first)
    offers.offer(second)
    await asyncio.sleep(0)
    assert offered(first) == TURN and offered(second) == 0
    await all_offered(second)


async def test_answers_changing_faster_than_their_fan_out_still_reach_every_feed() -> None:
    key, offers = key_of(FEEDS), Offers()
    for sequence in range(2, 2 + FEEDS // TURN):  # a newer answer after every turn
        key.answer = Answer(sequence, sequence, {"sequence": sequence})
        offers.offer(key)
        await asyncio.sleep(0)  # one turn: the turns are the point
    assert all(one.latest is not None for one in key.subscribers)
    await all_offered(key)
