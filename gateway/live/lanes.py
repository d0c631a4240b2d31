"""The evaluation budget of a gateway's live queries: the SQL lane's slots, each owner's half,
the distinct keys each owner may start (`Lanes.room`).

Ad-hoc SQL evaluations run in the `sql` lane (`live_concurrency` slots): there a slot
bounds real work (a statement of the principal's own, `projector/queries.py`). An owner
(the principal a key is charged to) runs at most half of the lane at once (at least one
slot), so one principal's slow feeds make only its own wait. Waiting for a slot ends at
the evaluation's deadline with a 429.

Catalogue queries and views (the `app` lane) take no slot: their unit is the round
(`gateway/live/rounds.py`), one in flight per gateway, all its keys answered on one of the
projector's named-query threads in one transaction. Measured before rounds (`ironstar
bench live`, 10 keys due after each batch, one owner): per-key slots (4, then 16 with the
owner's half 8) split the due keys of a batch into rounds of 8 and 2, the second waiting
for the first; a slot there bounded nothing the round does not bound already.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

from common.errors import TooManyRequests
from gateway.security.grants import Principal

SQL_LANE, APP_LANE = "sql", "app"


class Lanes:
    """The SQL lane's slots, and the distinct keys each owner is charged with."""

    def __init__(self, concurrency: int) -> None:
        self.size = {SQL_LANE: concurrency}
        self._free = {lane: asyncio.Semaphore(n) for lane, n in self.size.items()}
        self.owned: Counter[str] = Counter()  # distinct keys per owner (principal key)
        self._halves: dict[tuple[str, str], asyncio.Semaphore] = {}  # (owner, lane)

    def own(self, owner: Principal | None, change: int) -> None:
        """Charge `owner` with `change` (+1 or -1) keys; None (a built-in view) is free."""
        if owner is None:
            return
        if not self.owned[owner.key]:
            for lane, size in self.size.items():
                self._halves[owner.key, lane] = asyncio.Semaphore(max(1, size // 2))
        self.owned[owner.key] += change
        if self.owned[owner.key] <= 0:
            del self.owned[owner.key]
            for lane in self.size:
                del self._halves[owner.key, lane]

    def room(self, owner: Principal | None, keys: int, most: int, per_owner: int) -> None:
        """429 unless one more key may start beside the `keys` there are, charged to `owner`:
        a view's (None) while the views' keys are fewer than `most`; a principal's while the
        principals' are fewer than `most`, its own fewer than `per_owner` and fewer than the
        principals' keys still free (the rest are the others')."""
        taken = self.owned.total()
        if owner is None:
            if keys - taken >= most:
                raise _full(
                    f"this gateway follows {most} distinct dashboard views, its limit; retry later"
                )
            return
        mine = self.owned[owner.key]
        if taken >= most:
            raise _full(
                f"this gateway follows {most} distinct live queries, its limit; follow one of "
                "those, or retry later",
                "live_queries",
            )
        if mine >= per_owner:
            raise _full(
                f"you started {per_owner} distinct live queries on this gateway, the most one "
                "principal may; close one, or follow one of those",
                "live_queries_per_principal",
            )
        if mine >= most - taken:
            raise _full(
                f"you started {mine} distinct live queries on this gateway and only "
                f"{most - taken} are free, left to the others; close one, or follow one of those",
                "live_queries_share",
            )

    @contextlib.asynccontextmanager
    async def slot(
        self, lane: str, owner: Principal | None, deadline: float
    ) -> AsyncIterator[None]:
        """One of `lane`'s slots (and one of `owner`'s half of it; `owner` must own a key)
        free before `deadline` (`time.monotonic()`), else 429 with `Retry-After: 1`."""
        gates = [self._free[lane]]
        if owner is not None:
            gates.insert(0, self._halves[owner.key, lane])
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    for gate in gates:
                        await gate.acquire()
                        held.callback(gate.release)
            except TimeoutError:
                raise TooManyRequests(
                    f"no live-query slot of this gateway's {self.size[lane]} ({lane} queries) "
                    "came free before the query's time limit; retry in 1 s",
                    retry_after=1,
                    limit="live_concurrency",
                ) from None
            yield


def _full(message: str, limit: str = "live_views") -> TooManyRequests:
    return TooManyRequests(message, retry_after=5, limit=limit)
