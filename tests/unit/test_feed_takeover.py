"""Who gets a named consumer's feed when connections of it arrive together
(gateway/feed/takeover.py, verify6 V3): the newest, each one waiting for the one before it."""

from __future__ import annotations

import asyncio

import pytest

from common.errors import Conflict
from gateway.feed.takeover import Arrivals, Handover
from tests.support.waiting import soon


def _take_over(arrivals: Arrivals, open_feed: Handover, mine: Handover) -> asyncio.Future[None]:
    return asyncio.ensure_future(arrivals.take_over("c", mine, open_feed, within_s=5))


async def test_of_connections_arriving_while_the_feed_ends_only_the_newest_takes_it() -> None:
    arrivals, cuts = Arrivals(), []
    open_feed = Handover()
    open_feed.ready(lambda drain: cuts.append("open" if not drain else "open, drained"))
    first, second, third = Handover(), Handover(), Handover()
    waits = [_take_over(arrivals, open_feed, h) for h in (first, second)]
    await soon(lambda: cuts == ["open"] and arrivals._newest.get("c") is second)
    waits.append(_take_over(arrivals, open_feed, third))
    await soon(lambda: arrivals._newest.get("c") is third)
    assert cuts == ["open"]  # cut once by the first arrival; the others wait in a chain
    assert not any(w.done() for w in waits)
    open_feed.ended()  # its last move done
    done = await asyncio.gather(*waits, return_exceptions=True)
    assert [type(d) for d in done] == [Conflict, Conflict, type(None)]
    arrivals.settled("c", third, opened=True)
    arrivals.check("c", third)  # nothing newer: no entry left either
    assert not arrivals._newest


async def test_a_connection_asked_to_give_way_before_its_response_started_is_cut_as_it_starts() -> (
    None
):
    cuts: list[str] = []
    opening = Handover()
    waiting = asyncio.ensure_future(opening.give_way(within_s=5))
    await soon(lambda: opening._done is not None)  # asked to give way, not cut yet
    opening.ready(lambda drain: cuts.append("cut" if not drain else "cut, drained"))
    assert cuts == ["cut"]
    opening.ended()
    await asyncio.wait_for(waiting, 1)


async def test_an_arrival_superseded_while_it_was_opening_is_refused_and_lets_the_newer_on() -> (
    None
):
    arrivals = Arrivals()
    opening, newer = Handover(), Handover()
    await arrivals.take_over("c", opening, None)  # nothing open: it goes on at once
    waiting = _take_over(arrivals, Handover(), newer)  # it waits for the opening one
    await soon(lambda: arrivals._newest.get("c") is newer)
    with pytest.raises(Conflict, match="newer connection"):
        arrivals.check("c", opening)  # (the open's last step)
    assert not waiting.done()
    arrivals.settled("c", opening, opened=False)
    await asyncio.wait_for(waiting, 1)
