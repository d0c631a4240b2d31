"""Read-your-writes: wait until the read model has applied a given stream sequence."""

from __future__ import annotations

import asyncio

from common.errors import Timeout


class Progress:
    """The last stream sequence the read model has committed (`applied`), for queries
    with `min_seq` to wait on. One per replica, on its event loop."""

    def __init__(self, applied: int) -> None:
        self.applied = applied
        self._changed = asyncio.Condition()

    async def advance(self, sequence: int) -> None:
        """Record that `sequence` is committed and wake the waiters it satisfies."""
        async with self._changed:
            self.applied = sequence
            self._changed.notify_all()

    async def reach(self, sequence: int, timeout_s: float) -> int:
        """The applied sequence once it is ≥ `sequence`, or Timeout (504 naming where the
        model is) after `timeout_s` seconds."""
        if self.applied >= sequence:
            return self.applied
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self.applied >= sequence)
        except TimeoutError:
            raise Timeout(
                f"the read model has applied up to sequence {self.applied}, not yet {sequence}, "
                f"after {timeout_s:g} s; retry later or with a smaller min_seq",
                sequence=self.applied,
            ) from None
        return self.applied
