"""The newest connection of a named client takes over (attack15r F3): a second connection for
the same consumer (principal, `client_id`, topics) on one gateway ends the older one — its
connection cut, its last consumer move done (`LazyAcks.finish`) — and then opens from the
consumer's position. Before, it was refused with 429 for as long as the older connection
lived, which for a stuck one (a peer that stopped reading, a half-open connection after a
network change) was until the kernel gave up on it (minutes) while `Retry-After: 1`
promised otherwise.

Connections that arrive while another one of the same consumer is still taking over: the
newest wins (verify6 V3; before, all but one got 429 "the older one did not end in time" at
once, the newest among them too). Each arrival supersedes the ones still taking over; a
superseded one answers 409 without `Retry-After` (retrying would cut the newer one) once the
feed it waited for ended, or as soon as its own open is done if it had got that far."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from common.errors import Conflict

TAKE_OVER_S = 3.0  # how long a new connection waits for the older one's end (seconds)


class Handover:
    """How a named connection gives way: made as it arrives, given its `cut` by its stream loop
    once the response started (`ready`); it holds that bound method and, only once asked, a
    future."""

    __slots__ = ("_cut", "_done")

    def __init__(self) -> None:
        self._cut: Callable[[bool], None] | None = None
        self._done: asyncio.Future[None] | None = None

    def ready(self, cut: Callable[[bool], None] | None) -> None:
        """The response started: `cut(drain)` ends its connection (None: it cannot be cut,
        another server; `direct.Outgoing.cut`). Cut at once when a newer connection asked
        before (it opened meanwhile)."""
        self._cut = cut
        if self._done is not None and cut is not None:
            cut(False)

    def cut(self) -> None:
        """End the connection now, if its response started (the gateway is stopping: its last
        move follows what the kernel still sends, `drain`)."""
        if self._cut is not None:
            self._cut(True)

    async def give_way(self, within_s: float = TAKE_OVER_S) -> None:
        """Cut the connection (or, before its response started, as soon as it starts or refuse
        it, see `Arrivals`) and wait up to `within_s` for the feed's end (its last move); the
        caller finds the consumer still held when it did not end in time."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        if self._cut is not None:
            self._cut(False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), within_s)

    def ended(self) -> None:
        """The feed ended and made its last move: a waiting newer connection goes on."""
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class Arrivals:
    """The newest arrival of each consumer while one takes over (an entry only meanwhile)."""

    __slots__ = ("_newest",)

    def __init__(self) -> None:
        self._newest: dict[str, Handover] = {}

    async def take_over(
        self, consumer: str, mine: Handover, feed: Handover | None, within_s: float = TAKE_OVER_S
    ) -> None:
        """`mine` is now the newest connection of `consumer`: it waits (up to `within_s`) for the
        arrival it supersedes while that one takes over, else for the open `feed` (cut); Conflict
        (409) when a newer one arrived meanwhile."""
        older, self._newest[consumer] = self._newest.get(consumer, feed), mine
        try:
            if older is not None:
                await older.give_way(within_s)
            self.check(consumer, mine)
        except BaseException:
            self.settled(consumer, mine, opened=False)
            raise

    def check(self, consumer: str, mine: Handover) -> None:
        """Conflict (409) when a newer connection of `consumer` arrived since `mine`."""
        if self._newest.get(consumer, mine) is not mine:
            raise Conflict(
                f"a newer connection of consumer {consumer} (the same client_id and topics) "
                "arrived while this one was taking over, and has the feed; this one is not "
                "opened (retrying would cut that newer one)"
            )

    def settled(self, consumer: str, mine: Handover, opened: bool) -> None:
        """`mine` opened (or did not: then a newer one waiting on it goes on at once)."""
        if self._newest.get(consumer) is mine:
            del self._newest[consumer]
        if not opened:
            mine.ended()
