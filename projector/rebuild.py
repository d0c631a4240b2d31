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
import time
from collections.abc import Collection

import msgspec
import structlog
from nats.aio.client import Client

from projector.feed import Feed
from projector.readmodel import ReadModel
from projector.replica import Replica, apply

log = structlog.get_logger()


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
    own (`durable`, batches of `batch_size`, growing with the aggregates up to
    `catchup_max`: `projector.feed.catchup_size`), while the live file answers; then pauses the
    live feed, catches up to its checkpoint and swaps the rebuilt tables in. One rebuild
    at a time; `status` says how far it is, `halt` as the replica's `on_poison`."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        subject: str,
        durable: str,
        batch_size: int,
        halt: bool,
        catchup_max: int = 0,
    ) -> None:
        self.nc, self.stream, self.subject = nc, stream, subject
        self.durable, self.batch_size, self.halt = durable, batch_size, halt
        self.catchup_max = catchup_max
        self.status = Status()
        self.task: asyncio.Task[None] | None = None

    def start(self, replica: Replica, names: Collection[str]) -> Status:
        """Start rebuilding `names` (all when empty) unless a rebuild runs already."""
        if self.task is None or self.task.done():
            chosen = sorted(names or replica.model.projections)
            self.status = Status(state="running", projections=chosen)
            self.task = asyncio.create_task(self._run(replica, chosen))
        return self.status

    async def _run(self, replica: Replica, names: list[str]) -> None:
        live = replica.model
        path = live.path.with_name(live.path.stem + ".rebuild.duckdb")
        for stale in (path, path.with_name(path.name + ".wal")):
            stale.unlink(missing_ok=True)
        new = await asyncio.to_thread(ReadModel, path, tuple(live.projections.values()))
        kept = [n for n in live.projections if n not in names]
        feed = Feed(
            self.nc, self.stream, self.durable, self.subject, 0, self.batch_size,
            catchup_max=self.catchup_max,
        )  # fmt: skip
        try:
            await feed.start()
            started = time.monotonic()
            await self._catch_up(feed, new, names, live.checkpoint, started, exact=False)
            async with replica.writing:
                self.status.state = "swapping"
                target = replica.model.checkpoint
                await self._catch_up(feed, new, names, target, started, exact=bool(kept))
                if kept:
                    await asyncio.to_thread(new.copy_tables, replica.model, kept)
                await asyncio.to_thread(new.apply, [], target)
                await replica.swap(lambda old: _replace(old, new))
            self.status.state = "done"
            log.info("rebuilt", projections=names, sequence=new.checkpoint)
        except Exception as exc:
            self.status.state, self.status.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("rebuild_failed", projections=names)
            with contextlib.suppress(Exception):
                new.close()
        finally:
            await feed.close(delete=True)

    async def _catch_up(
        self,
        feed: Feed,
        new: ReadModel,
        names: list[str],
        target: int,
        started: float,
        exact: bool,
    ) -> None:
        """Apply `names` into `new` until its checkpoint reaches `target` (not beyond, if
        `exact`: the other projections' tables will be copied at exactly `target`)."""
        self.status.total = target
        never = asyncio.Event()
        while new.checkpoint < target:
            batch = await feed.next(never)
            assert batch is not None
            deliveries = (
                [d for d in batch.deliveries if d[0] <= target] if exact else batch.deliveries
            )
            last = min(batch.last, target) if exact else batch.last
            await asyncio.to_thread(apply, new, deliveries, last, self.halt, names)
            await feed.ack(batch)
            feed.follow(new.versions.aggregates)
            elapsed = max(time.monotonic() - started, 1e-6)
            self.status.done = new.checkpoint
            self.status.rate = round(new.checkpoint / elapsed, 1)
            left = max(target - new.checkpoint, 0)
            self.status.eta_s = round(left / self.status.rate, 1) if self.status.rate else None


def _replace(old: ReadModel, new: ReadModel) -> ReadModel:
    """Close both, rename the new file over the old path (atomic), open it."""
    path, projections = old.path, tuple(old.projections.values())
    old.close()
    new.close()  # a clean close folds the WAL into the file: one file to rename
    new.path.replace(path)
    return ReadModel(path, projections)
