"""A key's newest answer offered to its subscribers a few at a time, one turn of the loop each.

Issue 17 (`ironstar bench live`, stage stamps in docs/benchmarks.md): a round's answers
woke every feed of its keys at once (1,000 on the bench), so the event loop's next turn
wrote 1,000 frames before it read a socket again. An announcement or a round's reply that
arrived meanwhile waited for the whole fan-out: commit → the gateway hears it p90 261 to
646 ms on main at load 13 to 17, 70 to 158 ms with turns, on the critical path of the next
answer. Here at most `TURN` subscribers are offered an answer per turn, so sockets are
read between turns; the fan-out's total work is unchanged.

Latest wins across turns: a key whose answer changes while its fan-out is under way goes
on with the newer answer from the subscriber it had reached, then wraps round to those
offered the older one, keeping its place in the queue: no subscriber is offered the older
answer after the newer (`Subscriber.offer` replaces the one it holds), and a key whose
answer changes faster than its fan-out ends still reaches every subscriber (starting
again from the first would never reach the last ones).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from gateway.live.answer import Answer, Subscriber

TURN = 100  # subscribers offered an answer per turn of the event loop


class Shared(Protocol):
    """What is fanned out: a key's newest answer and its subscribers (`Evaluation`)."""

    answer: Answer | None
    subscribers: dict[Subscriber, None]


class Offers:
    """The keys whose newest answer is being offered, in the order their answers came."""

    def __init__(self, turn: int = TURN) -> None:
        self.turn = max(1, turn)
        self._pending: dict[Shared, tuple[list[Subscriber], int]] = {}  # to offer, from index
        self._task: asyncio.Task[None] | None = None

    def offer(self, shared: Shared) -> None:
        """Offer `shared.answer` to every subscriber of `shared`, `turn` subscribers per loop
        turn (if its fan-out is under way: on from where it was, then round to the rest)."""
        subscribers = list(shared.subscribers)
        if shared in self._pending:  # a queued key keeps its place
            old, at = self._pending[shared]
            if at < len(old) and old[at] in shared.subscribers:
                at = subscribers.index(old[at])
                subscribers = subscribers[at:] + subscribers[:at]
        self._pending[shared] = (subscribers, 0)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._pending:
                budget = self.turn
                while budget and self._pending:
                    shared, (subscribers, start) = next(iter(self._pending.items()))
                    end = min(start + budget, len(subscribers))
                    answer = shared.answer
                    for subscriber in subscribers[start:end]:
                        if answer is not None and subscriber in shared.subscribers:
                            subscriber.offer(answer)
                    budget -= end - start
                    if end < len(subscribers):
                        self._pending[shared] = (subscribers, end)
                    else:
                        del self._pending[shared]
                await asyncio.sleep(0)  # a turn: the loop reads its sockets before the next
        finally:
            self._task = None

    def forget(self, shared: Shared) -> None:
        """Offer nothing more of `shared` (its evaluation ended)."""
        self._pending.pop(shared, None)

    async def stop(self) -> None:
        """Cancel the fan-out under way (the gateway stops)."""
        task, self._task = self._task, None
        self._pending.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
