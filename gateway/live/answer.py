"""A live query's answers and each feed's place in them (`gateway/live/hub.py` evaluates).

An answer is as of a stream sequence and carries a version that changes only when its
result does. A subscriber holds at most one answer it has not written yet (latest wins),
and takes answers only forward: never one older than its resume point or the last one it
took, never the same version twice (issue 17: "nothing older is ever sent after something
newer").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.security.grants import Principal


@dataclass(frozen=True)
class Answer:
    """One answer: as of stream sequence `sequence`; `version` (0, 1, ...) changes only when
    the result does. `body` is `{"sequence", "result", "truncated"?}` as sent. Its frames are
    rendered once per format, whatever the number of subscribers."""

    sequence: int
    version: int
    body: dict[str, Any]
    frames: dict[str, bytes] = field(default_factory=dict)
    gone: dict[str, Any] = field(default_factory=dict)  # `vanished` since earlier answers
    seen: dict[str, Any] = field(default_factory=dict)  # the shape of all answers so far
    asked_at: float = field(default_factory=time.monotonic)  # its evaluation began (the key's pace)

    def frame(self, style: str, render: Callable[[Answer], bytes]) -> bytes:
        """The SSE frame of this answer in format `style` (a cache name): `render(self)`
        the first time, the same bytes after."""
        found = self.frames.get(style)
        if found is None:
            found = self.frames[style] = render(self)
        return found


GONE_KEPT = 256  # members of earlier answers remembered, at most


def vanished(seen: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(gone, seen after `new`): `gone` are the members of earlier answers (`seen`: their
    shape, every member of every object, recursively) that `new` (an answer's body) lacks,
    as nested nulls: what a JSON merge patch (Datastar's `datastar-patch-signals`, RFC 7386)
    must set to null to remove, so a client that skipped answers is cleared too. Past
    `GONE_KEPT` members the shape starts again from `new`."""
    gone = _diff(seen, new)
    shape = _merge(seen, _shape(new))
    return gone, shape if _count(shape) <= GONE_KEPT else _shape(new)


def with_nulls(body: dict[str, Any], gone: dict[str, Any]) -> dict[str, Any]:
    """`body` with the nested nulls of `gone` beside it (its own members win)."""
    out = dict(body)
    for name, value in gone.items():
        if name not in out:
            out[name] = None
        elif isinstance(value, dict) and isinstance(out[name], dict):
            out[name] = with_nulls(out[name], value)
    return out


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in old.items():
        if name not in new:
            out[name] = None
        elif (
            isinstance(value, dict)
            and isinstance(new[name], dict)
            and (inner := _diff(value, new[name]))
        ):
            out[name] = inner
    return out


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    return {name: _shape(v) if isinstance(v, dict) else None for name, v in body.items()}


def _merge(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """Both shapes: an object's members kept though it was a plain value since."""
    out = dict(one)
    for name, value in two.items():
        mine = out.get(name)
        if isinstance(value, dict):
            out[name] = _merge(mine, value) if isinstance(mine, dict) else value
        elif not isinstance(mine, dict):
            out[name] = value
    return out


def _count(gone: dict[str, Any]) -> int:
    return sum(_count(value) if isinstance(value, dict) else 1 for value in gone.values())


@dataclass(eq=False)
class Subscriber:
    """One feed's place: the latest answer it has not written yet (latest wins).

    `after`: the sequence of the answer the client holds (its `Last-Event-ID`; -1: none).
    `owner`: whom the evaluation is charged to if this feed takes it over from a leaving
    owner (None: a built-in view's feed, free). `interval_s`: its `min_interval_ms` in
    seconds (the key runs at its fastest feed's); `pace` sets `next_at` (`time.monotonic()`), when
    it may write next."""

    after: int = -1
    interval_s: float = 0.25
    next_at: float = 0.0
    version: int = -1  # the version it wrote last
    latest: Answer | None = None
    error: dict[str, Any] | None = None  # {"code", "message"} of a failed evaluation
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    owner: Principal | None = None
    sink: Callable[[Answer], bool] | None = None  # writes it now (True), set by the feed's loop

    def offer(self, answer: Answer) -> None:
        """Hold `answer` (replacing one not taken yet, and a failure not written yet: it is
        older) if it is as of the resume point or later and its result differs from the one
        written last; wake the feed. With nothing held, the feed's `sink` may write it at
        once instead (`gateway/live/follow.py`)."""
        if answer.sequence >= self.after and answer.version != self.version:
            self.error = None  # a failure not written yet is superseded (attack17c L1)
            if self.latest is None and self.sink is not None and self.sink(answer):
                return
            self.latest = answer
            self.wake.set()

    def take(self) -> Answer | None:
        """The answer to write now, or None; it becomes the resume point."""
        answer, self.latest = self.latest, None
        if answer is None or answer.sequence < self.after or answer.version == self.version:
            return None
        self.after, self.version = answer.sequence, answer.version
        return answer

    def take_error(self, now: float) -> dict[str, Any] | None:
        """The failure to write at `now` (`time.monotonic()`), paced like an answer (the
        next frame one interval later), or None."""
        error, self.error = self.error, None
        if error is not None:
            self.next_at = now + self.interval_s
        return error

    def pace(self, answer: Answer, now: float) -> None:
        """After writing `answer` at `now` (`time.monotonic()`): the next write waits one
        interval from the later of this feed's own cadence (`next_at`) and the start of
        the answer's evaluation (`Answer.asked_at`), and at least half an interval from
        now. So a feed gets one answer per interval on average, even beside a faster feed
        of its key, never two frames closer than half of it; a feed at its key's pace is
        never held, since its key's evaluations start an interval apart whatever their
        round took; and a write the fan-out delayed does not delay the next answer too.
        Measured in `ironstar bench live` (docs/benchmarks.md): pacing by the socket's
        write times cost +100 ms p50; by the answers' arrival at the gateway, a round
        quicker than the one before held 29 % of the writes, ~26 ms p50."""
        start = max(self.next_at, answer.asked_at)
        self.next_at = max(start + self.interval_s, now + self.interval_s / 2)

    def fail(self, code: str, message: str) -> None:
        """Tell the feed an evaluation failed (an `event: error` frame, paced like an answer;
        the feed goes on). The next answer is written even if its result equals the one
        written before the error: the client's last frame was the error, which that answer
        ends."""
        self.error = {"code": code, "message": message}
        self.latest = None  # an answer not written yet is older than the failure
        self.version = -1
        self.wake.set()
