"""A replica's current read model, swapped for a rebuilt one.

Queries take the model through `reading()`; a swap waits until none is running, blocks
new ones for the few milliseconds the swap takes (close, rename, open), then lets them
through to the new file. Ad-hoc SQL registers its cursor's interrupt (`interruptible`):
a swap gives running queries 0.5 s, then stops those (503, retry) rather than wait up to
their time limit while the live feed is paused. `paused()` stops the live feed from
writing, so a rebuild can catch up to a fixed checkpoint and copy tables at exactly that
point.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from concurrent.futures import Executor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NamedTuple

import structlog

from common import envelope as codec
from common.envelope import Stored
from projector import collector, metrics
from projector.feed import Batch, Delivery, Feed
from projector.feed_process import FeedProcess
from projector.progress import Progress
from projector.readmodel import ReadModel
from projector.readmodel_isolation import DeadLetter

log = structlog.get_logger()
LOGGED_IDS = 100  # correlation ids per batch_applied log line at most
SWAP_GRACE_S = 0.5  # running queries get this long to end before a swap interrupts them
INTERRUPT_EVERY_S = 0.05  # a swap repeats interrupts: DuckDB drops one sent before a start
QUIET_ABOVE = 1_000  # events: a larger batch (catching up) is applied without cyclic GC


class Replica:
    """A replica's current `ReadModel` and what coordinates its users: `writing` (held
    by whoever applies or swaps), `progress` (for `min_seq`), `generation` (bumped by a
    swap), `storage` (why the disk refuses writes, else None)."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        self.progress = Progress(model.checkpoint)
        self.generation = 0  # bumped by every swap: the live feed restarts from the new file
        self.storage: str | None = None  # why the model cannot be written now (a full disk)
        self.writing = asyncio.Lock()
        self._state = asyncio.Condition()
        self._readers = 0
        self._swapping = False
        self._interrupts: set[Callable[[], None]] = set()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[ReadModel]:
        """The current model, for a query; a swap waits until every reader left (and
        interrupts the `interruptible` ones after `SWAP_GRACE_S` seconds)."""
        async with self._state:
            await self._state.wait_for(lambda: not self._swapping)
            self._readers += 1
        try:
            yield self.model
        finally:
            async with self._state:
                self._readers -= 1
                self._state.notify_all()

    @contextmanager
    def interruptible(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """While inside, a swap calls `interrupt` instead of waiting for the query to end."""
        self._interrupts.add(interrupt)
        try:
            yield
        finally:
            self._interrupts.discard(interrupt)

    def interrupt_queries(self) -> None:
        """Interrupt every ad-hoc query running now (they answer 503, retry)."""
        for interrupt in list(self._interrupts):
            interrupt()

    async def swap(self, replace: Callable[[ReadModel], ReadModel]) -> None:
        """`replace(old)` closes the old model and returns the new one; hold `writing`."""
        async with self._state:
            self._swapping = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWAP_GRACE_S):
                    await self._state.wait_for(lambda: self._readers == 0)
            while self._readers:
                self.interrupt_queries()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(INTERRUPT_EVERY_S):
                        await self._state.wait_for(lambda: self._readers == 0)
        try:
            self.model = await asyncio.to_thread(replace, self.model)
            self.generation += 1
        finally:
            async with self._state:
                self._swapping = False
                self._state.notify_all()
        await self.progress.advance(self.model.checkpoint)


class Decoded(NamedTuple):
    """A batch decoded (`decode`): its envelopes, a dead letter for each message that is
    not one, the domain events the check built and every delivery's subject, by sequence."""

    events: list[Stored]
    dead: list[DeadLetter]
    typed: dict[int, Any]
    subjects: dict[int, str]


def decode(deliveries: list[Delivery]) -> Decoded:
    """Decode a batch: a dead letter for each message that is not an envelope of the
    aggregate whose subject it is on (the same check as the writer's and the feed's:
    `common.envelope.decode_stored`). Pure; a catch-up batch (more than `QUIET_ABOVE`
    deliveries) runs with cyclic GC paused, and may be decoded on another thread than the
    one that applies it (`projector/main.py`)."""
    events: list[Stored] = []
    dead: list[DeadLetter] = []
    typed: dict[int, Any] = {}
    with _quiet(deliveries):
        for sequence, subject, data in deliveries:
            parts = subject.rsplit(".", 2)  # <prefix>.events . <type> . <id>
            try:
                envelope, typed[sequence] = codec.decode_checked(data, *parts[-2:])
            except codec.Undecodable as exc:
                dead.append(DeadLetter(sequence, subject, f"cannot decode: {exc}", data))
            else:
                events.append(Stored(sequence, envelope))
        subjects = {sequence: subject for sequence, subject, _ in deliveries}
    return Decoded(events, dead, typed, subjects)


Taken = tuple[Batch, Decoded | None]  # a batch, decoded already or not


async def take(
    feed: Feed | FeedProcess, stop: asyncio.Event, decoder: Executor | None = None
) -> Taken | None:
    """The feed's next batch (None once `stop` is set), decoded on `decoder` if given (a
    catch-up decodes the next batch while one is applied: `projector/main.py`,
    `projector/rebuild.py`)."""
    batch = await feed.next(stop)
    if batch is None:
        return None
    if decoder is None:
        return batch, None
    loop = asyncio.get_running_loop()
    return batch, await loop.run_in_executor(decoder, decode, batch.deliveries)


def _quiet(deliveries: list[Delivery]) -> contextlib.AbstractContextManager[None]:
    if len(deliveries) > QUIET_ABOVE:
        return collector.paused()
    return contextlib.nullcontext()


def apply(
    model: ReadModel,
    deliveries: list[Delivery],
    last: int,
    halt: bool,
    only: Collection[str] | None = None,
    decoded: Decoded | None = None,
) -> list[DeadLetter]:
    """Apply one batch (in a worker thread), decoding it first unless `decoded` (the
    `decode` of the same `deliveries`) is given; records its metrics and returns its dead
    letters. A batch of more than `QUIET_ABOVE` events (catching up) runs with cyclic
    garbage collection paused (`projector/collector.py`)."""
    started = time.perf_counter()
    with _quiet(deliveries):
        events, dead, typed, subjects = decode(deliveries) if decoded is None else decoded
        dead = model.apply(events, last, dead, halt, only, subjects, typed)
    log.info(
        "batch_applied",
        first=deliveries[0][0] if deliveries else last,
        last=last,
        events=len(deliveries),
        correlation_ids=heapq.nsmallest(
            LOGGED_IDS, {e.event.metadata.correlation_id for e in events}
        ),  # sorted; a third of sorting 50,000 ids
    )
    for letter in dead:
        metrics.DEAD_LETTERS.labels(letter.projection).inc()
    metrics.EVENTS_PROCESSED.inc(len(deliveries))
    metrics.BATCH_SIZES.observe(len(deliveries))
    metrics.BATCH_DURATION.observe(time.perf_counter() - started)
    return dead
