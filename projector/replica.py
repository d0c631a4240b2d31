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

import structlog

from projector import metrics
from projector.decoding import LOGGED_IDS, Decoded, decode, quiet
from projector.feed import Batch, Delivery, Feed
from projector.feed_process import FeedProcess
from projector.prestage import Received, completed
from projector.progress import Progress
from projector.readmodel import ReadModel
from projector.readmodel_isolation import DeadLetter

log = structlog.get_logger()
SWAP_GRACE_S = 0.5  # running queries get this long to end before a swap interrupts them
INTERRUPT_EVERY_S = 0.05  # a swap repeats interrupts: DuckDB drops one sent before a start


class Replica:
    """A replica's current `ReadModel` and what coordinates its users: `writing` (held
    by whoever applies or swaps), `progress` (for `min_seq`), `generation` (bumped by a
    swap), `storage` (why the disk refuses writes, else None), `halted` (the poison event
    it stopped before, with `on_poison=halt`, else None)."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        self.progress = Progress(model.checkpoint)
        self.generation = 0  # bumped by every swap: the live feed restarts from the new file
        self.storage: str | None = None  # why the model cannot be written now (a full disk)
        self.halted: str | None = None  # why it stopped applying for good (on_poison=halt)
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


Taken = tuple[Batch, Decoded | Received | None]  # a batch, decoded (or read back) or not


async def take(
    feed: Feed | FeedProcess, stop: asyncio.Event, decoder: Executor | None = None
) -> Taken | None:
    """The feed's next batch (None once `stop` is set), decoded on `decoder` if given (a
    catch-up decodes the next batch while one is applied: `projector/main.py`,
    `projector/rebuild.py`), or read back there if the feed process staged it."""
    batch = await feed.next(stop)
    if batch is None:
        return None
    if decoder is None:
        return batch, None
    loop = asyncio.get_running_loop()
    return batch, await loop.run_in_executor(decoder, _prepare, batch)


def _prepare(batch: Batch) -> Decoded | Received:
    """The batch staged whole, if the feed process staged its share of it
    (`projector/prestage.py`), else decoded."""
    staged = None if batch.prestaged is None else completed(batch.prestaged, batch.deliveries)
    return staged or decode(batch.deliveries)


def apply(
    model: ReadModel,
    deliveries: list[Delivery],
    last: int,
    halt: bool,
    only: Collection[str] | None = None,
    decoded: Decoded | Received | None = None,
) -> list[DeadLetter]:
    """Apply one batch (in a worker thread), decoding it first unless `decoded` (the
    `decode` of the same `deliveries`, or their batch as the feed process staged it) is
    given; records its metrics and returns its dead letters. A batch of more than
    `QUIET_ABOVE` events (catching up) runs with cyclic garbage collection paused
    (`projector/collector.py`)."""
    started = time.perf_counter()
    with quiet(deliveries):
        if isinstance(decoded, Received) and model.apply_staged(decoded.batch, last, only):
            dead: list[DeadLetter] = []
            ids, staged = decoded.correlation_ids, True
        else:  # decoded here, or staged but refused: the envelopes' path isolates the fault
            if not isinstance(decoded, Decoded):
                decoded = decode(deliveries)
            events, dead, typed, subjects = decoded
            dead = model.apply(events, last, dead, halt, only, subjects, typed)
            ids = heapq.nsmallest(  # sorted; a third of sorting 50,000 ids
                LOGGED_IDS, {e.event.metadata.correlation_id for e in events}
            )
            staged = False
    log.info(
        "batch_applied",
        first=deliveries[0][0] if deliveries else last,
        last=last,
        events=len(deliveries),
        staged=staged,  # by the feed process (projector/prestage.py)
        ms=round((time.perf_counter() - started) * 1000, 2),  # decoding (if not given) to commit
        correlation_ids=ids,
    )
    for letter in dead:
        metrics.DEAD_LETTERS.labels(letter.projection).inc()
    metrics.EVENTS_PROCESSED.inc(len(deliveries))
    metrics.BATCH_SIZES.observe(len(deliveries))
    metrics.BATCH_DURATION.observe(time.perf_counter() - started)
    return dead
