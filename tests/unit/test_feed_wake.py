"""A feed's wake-up flag (gateway/feed/wake.py): what the feed loop relied on from an Event."""

from __future__ import annotations

import asyncio

from gateway.feed.wake import Wake


async def test_a_flag_raised_before_waiting_returns_at_once_until_cleared() -> None:
    wake = Wake()
    wake.set()
    await asyncio.wait_for(wake.wait(), 1)
    assert wake.is_set()
    wake.clear()
    waiting = asyncio.ensure_future(wake.wait())
    await asyncio.sleep(0)  # let it start waiting: nothing has raised the flag
    assert not waiting.done()
    waiting.cancel()


async def test_a_set_from_a_callback_wakes_the_waiter_and_a_cancelled_wait_leaves_it_usable() -> (
    None
):
    wake = Wake()
    cancelled = asyncio.ensure_future(wake.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    asyncio.get_running_loop().call_later(0.01, wake.set)
    await asyncio.wait_for(wake.wait(), 5)
    assert wake.is_set()
