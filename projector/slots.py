"""Bounded concurrency with a waiting room and deadlines, on threads of its own, fair
between principals.

Ad-hoc SQL runs here, never on the threads that apply events or answer named queries, so a
flood of slow queries can only make other ad-hoc queries wait. At most `running` queries
run at once (each on its own DuckDB cursor and thread) and `waiting` more wait for a slot;
past that a request is refused at once with 429 and `Retry-After`. One principal (the
token's subject; "" without auth) holds at most `per_principal` of those places and at
most half of the running slots (at least one), so one client cannot lock the others out.
A request holds its place from arrival (also while it waits for `min_seq`), and its
deadline counts from arrival: one that waits for a slot until its deadline gets a 429 too,
since the replica was busy rather than the query slow.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

from common.errors import TooManyRequests

T = TypeVar("T")
RETRY_AFTER_S = 1


def _busy(message: str) -> TooManyRequests:
    return TooManyRequests(
        f"{message}; retry in {RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S, limit="concurrency"
    )


class Slots:
    """`running` slots and `waiting` places for the queries named `what` (e.g. "sql"),
    `per_principal` places at most for one principal (see the module's docstring): hold
    `admitted`, then `slot`, then `call` the work."""

    def __init__(self, running: int, waiting: int, per_principal: int, what: str) -> None:
        self.running, self.waiting, self.what = running, waiting, what
        self.per_principal = max(1, per_principal)
        self.pool = ThreadPoolExecutor(running, thread_name_prefix=what)
        self._free = asyncio.Semaphore(running)
        self._admitted: Counter[str] = Counter()
        self._running_of: dict[str, asyncio.Semaphore] = {}  # per admitted principal
        self.busy = 0  # queries handed to the threads by `call` and not yet returned

    @property
    def held(self) -> int:
        """Places held now (running, waiting for a slot or for `min_seq`)."""
        return self._admitted.total()

    @asynccontextmanager
    async def admitted(self, principal: str) -> AsyncIterator[None]:
        """A place among the `running + waiting` this replica holds at once, or 429 now."""
        if self._admitted.total() >= self.running + self.waiting:
            raise _busy(
                f"{self.running} {self.what} queries are running and {self.waiting} waiting on "
                "this replica, its limit"
            )
        if self._admitted[principal] >= self.per_principal:
            raise _busy(
                f"you have {self.per_principal} {self.what} queries running or waiting on this "
                "replica, the most one principal may"
            )
        if not self._admitted[principal]:
            self._running_of[principal] = asyncio.Semaphore(max(1, self.running // 2))
        self._admitted[principal] += 1
        try:
            yield
        finally:
            self._admitted[principal] -= 1
            if not self._admitted[principal]:
                del self._admitted[principal], self._running_of[principal]

    @asynccontextmanager
    async def slot(self, principal: str, deadline: float) -> AsyncIterator[None]:
        """One of the running slots, free before `deadline` (`time.monotonic()`), or 429;
        hold `admitted(principal)` first."""
        async with AsyncExitStack() as held:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    for semaphore in (self._running_of[principal], self._free):
                        await semaphore.acquire()
                        held.callback(semaphore.release)
            except TimeoutError:
                raise _busy(
                    f"no {self.what} slot of this replica's {self.running} came free before the "
                    "query's time limit"
                ) from None
            yield

    async def call(self, work: Callable[[], T]) -> T:
        """Run `work` on one of the slots' threads (hold a `slot` first)."""
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, work)
        finally:
            self.busy -= 1

    def close(self) -> None:
        """Wait for the queries running now (interrupt them first); drop the waiting ones."""
        self.pool.shutdown(wait=True, cancel_futures=True)
