"""Live rounds: the app lane's due evaluations asked of a projector in one request.

Issue 17: each due catalogue key (queries and views) of `gateway/live/hub.py` used to be a
request of its own; 10 keys due after a batch were 10 round trips, 10 hops onto the
projector's named-query threads and 10 transactions, competing with each other and with
event application. Now the keys that fall due together (within `GATHER_S` of the first)
make one round: one `LiveRound` request, answered in one read transaction as of one
checkpoint (`projector/liveround.py`). One round is in flight at a time per gateway; keys
that fall due meanwhile join the next one, sent as soon as it returns. Ad-hoc SQL stays
one request per evaluation (its sandbox, per-principal places and time limit are per
statement: `projector/queries.py`).

Each key still waits for its own slot and keeps its own deadline (`gateway/live/lanes.py`);
a round's time limit is the earliest of its keys' and its `min_seq` the highest (a newer
answer is never wrong: answers only move forward). A key whose `min_seq` no replica has
announced yet (a resume point or a read-your-writes `min_seq` ahead of the read models)
waits here for the announcement (504 at its deadline), costing no projector handler and
holding up no round; only before any announcement was heard is it asked of a projector,
one such key at a time. One
failing key fails only itself: its part of the reply is its error, raised to its
evaluation alone; a failed round fails each of its keys, which retry next round as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from common.errors import ErrorReply, Internal, Timeout, from_reply
from common.messages import LiveKey, LiveRound
from gateway import metrics

Send = Callable[[bytes, float], Awaitable[bytes]]  # (LiveRound JSON, seconds) -> the reply
GATHER_S = 0.002  # keys woken by one announcement join the round of the first
_json = msgspec.json.Encoder()


class _Reply(msgspec.Struct):
    answers: list[msgspec.Raw]


class _Failed(msgspec.Struct):
    error: ErrorReply


_replies = msgspec.json.Decoder(_Reply)
_failures = msgspec.json.Decoder(_Failed)


@dataclass(eq=False)
class _Wanted:
    """One key's evaluation waiting for its round."""

    key: LiveKey
    min_seq: int
    deadline: float  # time.monotonic()
    answer: asyncio.Future[bytes]


def not_reached(min_seq: int) -> Timeout:
    """The 504 of a live answer that must be as of `min_seq` when no answer got there in time."""
    return Timeout(
        f"the read model did not reach sequence {min_seq} in time; retry later or "
        "with a smaller min_seq",
        min_seq=min_seq,
    )


class Rounds:
    """The app lane's rounds of one gateway (see the module's doc)."""

    def __init__(self) -> None:
        self._next: list[_Wanted] = []
        self._running: asyncio.Task[None] | None = None
        self.heard = 0  # the newest sequence a replica announced (`Hub`)
        self._news = asyncio.Condition()
        self._unheard = asyncio.Semaphore(1)  # before any announcement: one ask at a time

    async def hear(self, sequence: int) -> None:
        """A replica announced `sequence` (`<prefix>.applied`): wake the asks waiting for it."""
        if sequence > self.heard:
            self.heard = sequence
            async with self._news:
                self._news.notify_all()

    async def _announced(self, min_seq: int, deadline: float) -> None:
        """Wait here, not at a projector, until a replica announced `min_seq`; Timeout
        (504) at `deadline` (`time.monotonic()`). A far-ahead `min_seq` (a hostile client's,
        or a resume point past the read models) then costs no projector handler and never
        holds a round (attack17b B4: asked of the projector, 24 such requests took all its
        round handlers for 5 s each and froze every live view)."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)), self._news:
                await self._news.wait_for(lambda: self.heard >= min_seq)
        except TimeoutError:
            raise not_reached(min_seq) from None

    async def ask(self, send: Send, key: LiveKey, min_seq: int, left_s: float) -> bytes:
        """The live reply of `key` as of `min_seq` or later (`{"sequence", "result",
        "reads", "truncated"?}` JSON), from the next round, sent with `send`, within `left_s`
        seconds; raises the key's own error or the round's."""
        loop = asyncio.get_running_loop()
        wanted = _Wanted(key, min_seq, time.monotonic() + left_s, loop.create_future())
        if min_seq > self.heard and self.heard == 0:  # nothing heard yet: ask, one at a time
            async with self._unheard:
                await self._round(send, [wanted])
                return await wanted.answer
        if min_seq > self.heard:  # not committed anywhere yet: it must not hold up the round
            await self._announced(min_seq, wanted.deadline)
        self._next.append(wanted)
        if self._running is None:
            self._running = asyncio.create_task(self._run(send))
        return await wanted.answer

    async def _run(self, send: Send) -> None:
        try:
            await asyncio.sleep(GATHER_S)
            while self._next:
                batch = [wanted for wanted in self._next if not wanted.answer.done()]
                self._next = []
                if batch:
                    await self._round(send, batch)
        finally:
            self._running = None
            for wanted in self._next:  # only if this task was cancelled
                wanted.answer.cancel()

    async def _round(self, send: Send, batch: list[_Wanted]) -> None:
        left_s = max(min(wanted.deadline for wanted in batch) - time.monotonic(), 0.001)
        request = LiveRound(
            keys=[wanted.key for wanted in batch],
            min_seq=max(wanted.min_seq for wanted in batch),
            timeout_s=left_s,
        )
        metrics.live_rounds.inc()
        try:
            parts = _replies.decode(await send(_json.encode(request), left_s)).answers
            if len(parts) != len(batch):
                raise Internal(f"a live round of {len(batch)} keys got {len(parts)} answers")
        except BaseException as exc:
            for wanted in batch:
                if wanted.answer.done():
                    continue
                if isinstance(exc, Exception):
                    wanted.answer.set_exception(exc)
                else:  # the round itself was cancelled (the gateway stops)
                    wanted.answer.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for wanted, part in zip(batch, parts, strict=True):
            if not wanted.answer.done():
                _settle(wanted.answer, bytes(part))


def _settle(answer: asyncio.Future[bytes], part: bytes) -> None:
    """Resolve a key's future with its part: its reply, or its error raised."""
    if part.startswith(b'{"error":'):
        answer.set_exception(from_reply(_failures.decode(part).error))
    else:
        answer.set_result(part)
