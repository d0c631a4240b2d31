"""Rebuild projections into a new DuckDB file, then swap it in; queries go on meanwhile.

1. A new file next to the live one gets the projections to rebuild (every one by default)
   applied from sequence 1, by a consumer of its own, up to the live checkpoint `T`.
2. With the live feed paused (`Replica.writing`), the new file catches up to the live
   checkpoint `C` exactly, takes a copy of the tables of the projections not rebuilt, and
   is swapped in: closed, renamed over the live path (atomic), opened. The live feed then
   resumes from the new file's checkpoint. Queries are answered from the old file until
   the swap and block only for the swap itself.

Progress (events done, rate, ETA) is kept in `status` for `ironstar rebuild` to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import structlog
from nats.aio.client import Client

from common.settings import NatsSettings, ProjectorSettings
from projector.feed import Feed, FeedLost
from projector.feed_process import BULK_INACTIVE_S, FeedProcess, feed_for
from projector.prestage import app_of
from projector.readmodel import ReadModel
from projector.replica import Replica, Taken, apply, take

log = structlog.get_logger()
LOSSES = 3  # lost feeds a rebuild makes again before it fails


class Status(msgspec.Struct, kw_only=True):
    """A rebuild's progress as the `rebuild` query answers it: events `done` of `total`,
    `rate` in events per second, `eta_s` in seconds, `error` once `failed`."""

    state: str = "idle"  # idle | running | swapping | done | failed
    projections: list[str] = []
    done: int = 0
    total: int = 0
    rate: float = 0.0  # events per second so far
    eta_s: float | None = None
    error: str | None = None


class Rebuilder:
    """Rebuilds projections into a fresh file beside the live one, from a consumer of its
    own (`projector-<name>-rebuild`, batches as the replica's own feed cuts them, growing
    with the aggregates up to `catchup_batch_max`: `projector.feed.catchup_size`; far
    behind, through a feed process: `projector/feed_process.py`), while the live file answers;
    then pauses the live feed, catches up to its checkpoint and swaps the rebuilt tables
    in. One rebuild at a time; `status` says how far it is; poison as the replica's
    `on_poison`."""

    def __init__(self, nc: Client, nats: NatsSettings, settings: ProjectorSettings) -> None:
        self.nc, self.nats, self.settings = nc, nats, settings
        self.durable = f"projector-{settings.name}-rebuild"
        self.halt = settings.on_poison == "halt"
        self.process_above = settings.catchup_process_above
        self.status = Status()
        self.task: asyncio.Task[None] | None = None
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="rebuild-decode")

    def start(self, replica: Replica, names: Collection[str]) -> Status:
        """Start rebuilding `names` (all when empty) unless a rebuild runs already."""
        if self.task is None or self.task.done():
            chosen = sorted(names or replica.model.projections)
            self.status = Status(state="running", projections=chosen)
            self.task = asyncio.create_task(self._run(replica, chosen))
        return self.status

    def _feed(self, new: ReadModel, bulk: bool) -> Feed | FeedProcess:
        after = new.checkpoint
        if bulk:  # ends when closed (`until` -1): the rebuild stops at its own target
            return feed_for(
                self.nc, self.nats, self.settings, self.durable, after, until=-1, app=app_of(new)
            )
        return feed_for(  # its consumer gone once unused (verify10c N5: left after a kill -9)
            self.nc, self.nats, self.settings, self.durable, after, inactive_s=BULK_INACTIVE_S
        )

    def discard_leftovers(self, live: ReadModel) -> None:
        """Delete the files a rebuild of `live` left when its process was killed mid-way
        (kill -9 runs no cleanup): at start no rebuild runs, so they are nobody's, and they
        held a copy of the read model's disk space until the next rebuild."""
        for file in _files(live):
            if file.exists():
                file.unlink()
                log.info("rebuild_leftover_deleted", path=str(file))

    async def _run(self, replica: Replica, names: list[str]) -> None:
        live = replica.model
        stale = _files(live)
        for file in stale:
            file.unlink(missing_ok=True)
        path = stale[0]
        new = await asyncio.to_thread(ReadModel, path, tuple(live.projections.values()))
        kept = [n for n in live.projections if n not in names]
        # The kept projections' tables are copied at the live checkpoint: never apply past
        # it (verify10b N1: a rebuild at start overshot a file behind the stream, and the
        # kept projections never got the events between).
        exact, started = bool(kept), time.monotonic()
        try:
            bulk = 0 < self.process_above < live.checkpoint
            await self._phase(new, names, live.checkpoint, started, exact, bulk)
            async with replica.writing:
                self.status.state = "swapping"
                target = replica.model.checkpoint
                await self._phase(new, names, target, started, exact, bulk=False)
                if kept:
                    await asyncio.to_thread(new.copy_tables, replica.model, kept)
                await asyncio.to_thread(new.apply, [], target)
                await replica.swap(lambda old: _replace(old, new))
            self.status.state = "done"
            log.info("rebuilt", projections=names, sequence=new.checkpoint)
        except BaseException as exc:  # also cancelled (the projector stopping)
            self.status.state, self.status.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("rebuild_failed", projections=names)
            with contextlib.suppress(Exception):
                new.close()
            for file in stale:  # nothing of a failed rebuild is kept (verify10b N3)
                file.unlink(missing_ok=True)
            if not isinstance(exc, Exception):
                raise

    async def _phase(
        self, new: ReadModel, names: list[str], target: int, started: float, exact: bool,
        bulk: bool,
    ) -> None:  # fmt: skip
        """Catch `new` up to `target` on a feed of its own from its checkpoint (a feed
        process if `bulk`). A lost feed (its process ended, its consumer deleted) is made
        again in this process from the checkpoint, as a replica's is, `LOSSES` times."""
        for losses in range(LOSSES + 1):
            if new.checkpoint >= target:
                return
            feed = self._feed(new, bulk)
            try:
                await feed.start()
                await self._catch_up(feed, new, names, target, started, exact)
                return
            except FeedLost as exc:
                if losses == LOSSES:
                    raise
                log.warning("rebuild_feed_lost", error=str(exc), sequence=new.checkpoint)
                bulk = False
            finally:
                await feed.close(delete=True)

    async def _catch_up(
        self,
        feed: Feed | FeedProcess,
        new: ReadModel,
        names: list[str],
        target: int,
        started: float,
        exact: bool,
    ) -> None:
        """Apply `names` into `new` until its checkpoint reaches `target` (not beyond, if
        `exact`: the other projections' tables will be copied at exactly `target`). The
        next batch is taken and decoded while one is applied, as the replica does catching
        up (`projector/main.py`)."""
        self.status.total = target
        never = asyncio.Event()
        ahead: asyncio.Future[Taken | None] | None = None
        try:
            while new.checkpoint < target:
                taken = await (ahead or take(feed, never, self._decoder))
                assert taken is not None  # (`never` is never set)
                batch, decoded = taken
                ahead = None
                deliveries, last = batch.deliveries, batch.last
                if exact and last > target:  # cut at the target, decoded again as cut
                    deliveries, last, decoded = (
                        [d for d in deliveries if d[0] <= target],
                        target,
                        None,
                    )
                if last < target:
                    ahead = asyncio.ensure_future(take(feed, never, self._decoder))
                work = functools.partial(apply, new, deliveries, last, self.halt, names, decoded)
                await asyncio.to_thread(work)
                await feed.ack(batch)
                feed.follow(new.versions.aggregates)
                self._progress(new.checkpoint, target, started)
        finally:
            if ahead is not None:  # a batch taken past a failure: dropped, never acked
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    def _progress(self, done: int, target: int, started: float) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        self.status.done = done
        self.status.rate = round(done / elapsed, 1)
        left = max(target - done, 0)
        self.status.eta_s = round(left / self.status.rate, 1) if self.status.rate else None


def _replace(old: ReadModel, new: ReadModel) -> ReadModel:
    """Close both, rename the new file over the old path (atomic), open it."""
    path, projections = old.path, tuple(old.projections.values())
    old.close()
    new.close()  # a clean close folds the WAL into the file: one file to rename
    new.path.replace(path)
    return ReadModel(path, projections)


def _files(live: ReadModel) -> tuple[Path, Path]:
    """A rebuild's file beside `live`'s (`<replica>.rebuild.duckdb`) and its WAL."""
    path = live.path.with_name(live.path.stem + ".rebuild.duckdb")
    return path, path.with_name(path.name + ".wal")
