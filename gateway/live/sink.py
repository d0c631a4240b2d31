"""A live feed's answers written by its key's fan-out, below the ASGI send chain (issue 17).

`Subscriber.offer` (`gateway/live/answer.py`) hands an answer to the feed's `Sink` while the
feed's loop (`gateway/live/follow.py`) waits with nothing held: a due answer is written to the
connection at once (`gateway/feed/direct.py`), with the loop's bookkeeping, instead of waking
the loop to write it through Litestar and uvicorn; anything else is held and the loop woken.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway import metrics
from gateway.feed import direct
from gateway.live.answer import Answer, Subscriber


def wrote(sink: Sink | None) -> None:
    """The feed's loop wrote a frame now: the keep-alive counts from here."""
    if sink is not None:
        sink.wrote_at = time.monotonic()


class Sink:
    """A feed's answers written by its key's fan-out (`Subscriber.offer`) while the feed's loop
    waits: a due answer (its interval open, no error to tell first) goes to the socket at once,
    taken and paced as the loop would; otherwise (not due, the socket not drained, gone) the
    answer is held and the loop woken, as before."""

    __slots__ = ("me", "render", "socket", "style", "wrote_at")

    def __init__(
        self, me: Subscriber, style: str, render: Callable[[Answer], bytes], socket: direct.Socket
    ) -> None:
        self.me, self.style, self.render, self.socket = me, style, render, socket
        self.wrote_at = time.monotonic()  # the head was just written

    def __call__(self, answer: Answer) -> bool:
        me, now = self.me, time.monotonic()
        if now < me.next_at or me.error is not None:
            return False
        try:  # a frame that cannot be rendered fails in the feed's own loop, not the fan-out's
            data = answer.frame(self.style, self.render)
        except (ValueError, TypeError):
            return False
        if not self.socket.write(data):
            return False
        me.after, me.version = answer.sequence, answer.version  # what `take` does
        me.pace(answer, now)
        self.wrote_at = now
        metrics.live_results.inc()
        metrics.direct_writes.inc()
        return True
