"""A live query's answers and each feed's place in them (`gateway/live/hub.py` evaluates).

An answer is as of a stream sequence and carries a version that changes only when its
result does. A subscriber holds at most one answer it has not written yet (latest wins),
and takes answers only forward: never one older than its resume point or the last one it
took, never the same version twice (issue 17: "nothing older is ever sent after something
newer").
"""

from __future__ import annotations

import asyncio
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

    def frame(self, style: str, render: Callable[[Answer], bytes]) -> bytes:
        """The SSE frame of this answer in format `style` (a cache name): `render(self)`
        the first time, the same bytes after."""
        found = self.frames.get(style)
        if found is None:
            found = self.frames[style] = render(self)
        return found


@dataclass(eq=False)
class Subscriber:
    """One feed's place: the latest answer it has not written yet (latest wins).

    `after`: the sequence of the answer the client holds (its `Last-Event-ID`; -1: none).
    `owner`: whom the evaluation is charged to if this feed takes it over from a leaving
    owner (None: a built-in view's feed, free)."""

    after: int = -1
    version: int = -1  # the version it wrote last
    latest: Answer | None = None
    error: dict[str, Any] | None = None  # {"code", "message"} of a failed evaluation
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    owner: Principal | None = None

    def offer(self, answer: Answer) -> None:
        """Hold `answer` (replacing one not taken yet) if it is as of the resume point or
        later and its result differs from the one written last; wake the feed."""
        if answer.sequence >= self.after and answer.version != self.version:
            self.latest = answer
            self.wake.set()

    def take(self) -> Answer | None:
        """The answer to write now, or None; it becomes the resume point."""
        answer, self.latest = self.latest, None
        if answer is None or answer.sequence < self.after or answer.version == self.version:
            return None
        self.after, self.version = answer.sequence, answer.version
        return answer

    def fail(self, code: str, message: str) -> None:
        """Tell the feed an evaluation failed (an `event: error` frame; the feed goes on)."""
        self.error = {"code": code, "message": message}
        self.wake.set()
