"""The newest connection of a named client takes over (attack15r F3): a second connection for
the same consumer (principal, `client_id`, topics) on one gateway ends the older one — its
connection cut, its last consumer move done (`LazyAcks.finish`) — and then opens from the
consumer's position. Before, it was refused with 429 for as long as the older connection
lived, which for a stuck one (a peer that stopped reading, a half-open connection after a
network change) was until the kernel gave up on it (minutes) while `Retry-After: 1`
promised otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

TAKE_OVER_S = 3.0  # how long a new connection waits for the older one's end (seconds)


class Handover:
    """How an open feed gives way (set by its stream loop once the response started); one per
    named connection, so it holds one bound method and, only once asked, a future."""

    __slots__ = ("_cut", "_done")

    def __init__(self, cut: Callable[[], None]) -> None:
        self._cut = cut
        self._done: asyncio.Future[None] | None = None

    async def give_way(self, within_s: float = TAKE_OVER_S) -> None:
        """Cut the connection and wait up to `within_s` for the feed's end (its last move);
        the caller finds the consumer still held when it did not end in time."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        self._cut()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), within_s)

    def ended(self) -> None:
        """The feed ended and made its last move: a waiting newer connection goes on."""
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
