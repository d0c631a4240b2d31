"""A feed's wake-up: `asyncio.Event` for exactly one waiter, without the Event's deque.

Every open feed holds one (`ClientFeed`), and an `asyncio.Event` with its waiter deque costs
~0.7 KiB; 10,000 idle clients per gateway made that worth a class (issue 15, memory per
idle client). Same calls as the Event a feed used: `set`, `is_set`, `clear`, `wait`.
"""

from __future__ import annotations

import asyncio


class Wake:
    """A flag one task waits on (a second concurrent waiter is a programming error)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """Raise the flag and wake the waiter, if any (never awaits)."""
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_set(self) -> bool:
        """Whether the flag is up."""
        return self._flag

    def clear(self) -> None:
        """Lower the flag."""
        self._flag = False

    async def wait(self) -> None:
        """Until the flag is up (at once when it is)."""
        if self._flag:
            return
        assert self._waiter is None, "one waiter at a time"
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
