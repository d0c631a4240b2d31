"""Deadlines instead of sleeps: wait for a condition, fail with what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    timeout: float = 10.0,
    every: float = 0.05,
) -> T:
    """Call `probe` until `until(result)` holds; fail with the last result after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if until(last):
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")


def until(condition: Callable[[], bool], timeout: float, say: Callable[[], str]) -> None:
    """Blocking twin of `eventually` for synchronous tests: `say()` explains a timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {say()}")
        time.sleep(0.02)


async def soon(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the loop run until `condition()` holds (checked every millisecond); fail after
    `timeout`. For in-process steps scheduled on the loop (callbacks, tasks just created)."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, bool, timeout=timeout, every=0.001)
