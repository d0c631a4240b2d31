"""Bounded concurrency with a waiting room and deadlines, on threads of its own.

Ad-hoc SQL runs here, never on the threads that apply events or answer named queries, so a
flood of slow queries can only make other ad-hoc queries wait. At most `running` queries
run at once (each on its own DuckDB cursor and thread) and `waiting` more wait for a slot;
past that a request is refused at once with 429 and `Retry-After`. A request holds its
place from arrival (also while it waits for `min_seq`), and its deadline counts from
arrival: one that waits for a slot until its deadline gets a 429 too, since the replica
was busy rather than the query slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from common.errors import TooManyRequests

T = TypeVar("T")
RETRY_AFTER_S = 1


class Slots:
    def __init__(self, running: int, waiting: int, what: str) -> None:
        self.running, self.waiting, self.what = running, waiting, what
        self.pool = ThreadPoolExecutor(running, thread_name_prefix=what)
        self._free = asyncio.Semaphore(running)
        self._admitted = 0

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A place among the `running + waiting` this replica holds at once, or 429 now."""
        if self._admitted >= self.running + self.waiting:
            raise TooManyRequests(
                f"{self.running} {self.what} queries are running and {self.waiting} waiting on "
                f"this replica, its limit; retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S,
                limit="concurrency",
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """One of the running slots, free before `deadline` (`time.monotonic()`), or 429."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                await self._free.acquire()
        except TimeoutError:
            raise TooManyRequests(
                f"no {self.what} slot of this replica's {self.running} came free before the "
                f"query's time limit; retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S,
                limit="concurrency",
            ) from None
        try:
            yield
        finally:
            self._free.release()

    async def call(self, work: Callable[[], T]) -> T:
        """Run `work` on one of the slots' threads (hold a `slot` first)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
