"""The projector's composition root: follow the stream into DuckDB, answer queries.

A file whose projections were built by another code version is rebuilt first (queries
are answered from it meanwhile); then the live feed applies batches from the checkpoint.
Batches are applied on a thread of their own, which no query ever occupies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import structlog
from nats.aio.client import Client
from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import ServiceUnavailableError

from common import bus
from common.errors import StorageFull
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import Subjects
from common.telemetry import serve_metrics
from projector import collector, metrics, queries
from projector.feed import Feed, FeedLost
from projector.feed_process import FeedProcess, feed_for
from projector.prestage import app_of
from projector.readmodel import ReadModel
from projector.readmodel_isolation import Poisoned
from projector.rebuild import Rebuilder
from projector.replica import Replica, Taken, apply, take

log = structlog.get_logger()
_json = msgspec.json.Encoder()
STORAGE_RETRY_S = 1.0  # how often a replica whose disk is full tries its batch again


async def serve(
    nats_settings: NatsSettings,
    settings: ProjectorSettings,
    ready: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    """Run replica `settings.name` until `stop`: open (or create) its DuckDB file under
    `settings.data_dir`, answer its queries, rebuild projections whose version changed,
    then follow the stream. `ready(line)` is called once queries are answered. A poisoned
    event with `on_poison=halt` keeps the replica answering at the checkpoint before it
    until `stop`; errors of NATS or the disk outside the feed's retries propagate."""
    model = ReadModel(Path(settings.data_dir) / f"{settings.name}.duckdb")
    replica = Replica(model)
    nc = await bus.connect(nats_settings, name=f"ironstar-projector-{settings.name}")
    subjects = Subjects(nats_settings.prefix)
    durable = f"projector-{settings.name}"
    rebuilder = Rebuilder(nc, nats_settings, settings)
    rebuilder.discard_leftovers(model)  # of a rebuild killed mid-way; the file is ours now
    serving: queries.Serving | None = None
    applier = ThreadPoolExecutor(1, thread_name_prefix="apply")  # no query ever runs here
    decoder = ThreadPoolExecutor(1, thread_name_prefix="decode")  # the next catch-up batch
    try:
        await bus.ensure_stream(nc, nats_settings)
        serving = await queries.serve(nc, subjects, replica, rebuilder, settings)
        port = serve_metrics(settings.metrics_host, settings.metrics_port)
        stale = model.stale()
        ready(
            f"projector {settings.name} at sequence {model.checkpoint}, file {model.path}"
            + (f", rebuilding {', '.join(stale)}" if stale else "")
            + (f", metrics :{port}" if port else "")
        )
        if stale:
            log.info("rebuild_on_version_change", projections=stale)
            rebuilder.start(replica, stale)
            assert rebuilder.task is not None
            await rebuilder.task
            if replica.model.stale():
                raise Poisoned(f"rebuilding {', '.join(stale)} failed: {rebuilder.status.error}")
        await _follow(
            nc, nats_settings, settings, replica, durable, subjects, stop, applier, decoder,
            serving,
        )  # fmt: skip
    except Poisoned as exc:
        metrics.HALTED.set(1)
        replica.halted = str(exc)
        if serving is not None:  # stopped before what others apply: not caught up
            await serving.current(False)
        await replica.progress.advance(replica.model.checkpoint)  # what was applied before it
        log.error("projection_halted", error=str(exc), sequence=replica.model.checkpoint)
        await stop.wait()  # keep answering queries at the halted checkpoint
    finally:
        await bus.goodbye(nc)
        if serving is not None:
            serving.close()
        applier.shutdown(wait=True)
        decoder.shutdown(wait=True)
        replica.model.close()


async def _follow(
    nc: Client,
    nats_settings: NatsSettings,
    settings: ProjectorSettings,
    replica: Replica,
    durable: str,
    subjects: Subjects,
    stop: asyncio.Event,
    applier: ThreadPoolExecutor,
    decoder: ThreadPoolExecutor,
    serving: queries.Serving,
) -> None:
    """Apply batches (on `applier`) until `stop`; restart the feed after a swap or a lost
    consumer. The replica answers as caught up (`serving.current`) while at most
    `batch_size` events wait: at each feed's start and after each batch. While catching up
    (more than `batch_size` events wait after a batch), the next batch is taken and decoded
    (on `decoder`) while this one is applied: DuckDB releases the GIL while a statement
    runs, and the feed is then far ahead anyway. A live batch is applied as before, so
    batches keep gathering what came during the last apply (taking the next one early would
    cut it at its first event).
    """
    bulk = settings.catchup_process_above > 0  # until a feed process fails once
    while not stop.is_set():
        generation = replica.generation
        feed: Feed | FeedProcess | None = None
        try:  # choosing the feed asks the stream's state: a leader moving may time it out
            feed, behind = await _feed(nc, nats_settings, settings, replica.model, durable, bulk)
            await feed.start()
            await serving.current(behind <= settings.batch_size)
            # (Re)started, maybe on a rebuilt file: whatever was answered before may differ.
            await _announce(nc, subjects, settings.name, replica.model.checkpoint, {"*"})
            follows = (replica, generation)  # the model this feed's position is of
            await _apply_from(
                feed, nc, settings, follows, subjects, stop, applier, decoder, serving
            )
        except StorageFull as exc:
            await serving.current(False)  # cannot apply what others do until space returns
            if replica.storage is None:
                log.error("storage_exhausted", error=exc.message, sequence=replica.model.checkpoint)
            replica.storage = exc.message
            metrics.STORAGE_EXHAUSTED.set(1)
            # Nothing of the batch was acked: the feed starts again from the checkpoint.
            await asyncio.sleep(STORAGE_RETRY_S)  # a retry interval, not synchronisation
        except FeedLost as exc:
            log.warning("feed_lost", error=str(exc))
            bulk = bulk and not isinstance(feed, FeedProcess)  # in this process from now on
        except (ServiceUnavailableError, NoRespondersError, ConnectionReconnectingError) as exc:
            log.warning("feed_unavailable", error=repr(exc))  # e.g. a consumer leader moving
            await asyncio.sleep(settings.batch_ms / 1000)  # back off, then recreate the feed
        except (TimeoutError, NatsTimeout) as exc:
            log.warning("feed_unavailable", error=repr(exc))
        finally:
            if feed is not None:
                await feed.close()


async def _feed(
    nc: Client,
    nats_settings: NatsSettings,
    settings: ProjectorSettings,
    model: ReadModel,
    durable: str,
    bulk: bool,
) -> tuple[Feed | FeedProcess, int]:
    """The feed from `model`'s checkpoint: in a process of its own, which stages the
    batches too, while more than `catchup_process_above` events wait
    (`projector/feed_process.py`, `projector/prestage.py`), else in this one; and how
    many events the stream holds past the checkpoint."""
    after, until = model.checkpoint, None
    state = (await nc.jetstream().stream_info(nats_settings.stream)).state
    behind = max(0, state.last_seq - after)
    if bulk and behind > settings.catchup_process_above:
        until = settings.batch_size  # its batch leaving a live batch pending: the last
    app = app_of(model) if until is not None else ""  # a feed process's: it may stage
    return feed_for(nc, nats_settings, settings, durable, after, until, app=app), behind


async def _apply_from(
    feed: Feed | FeedProcess,
    nc: Client,
    settings: ProjectorSettings,
    follows: tuple[Replica, int],
    subjects: Subjects,
    stop: asyncio.Event,
    applier: ThreadPoolExecutor,
    decoder: ThreadPoolExecutor,
    serving: queries.Serving,
) -> None:
    """Apply `feed`'s batches to the replica of `follows` until `stop`, or until a swap
    moves it past the generation of `follows` (`_follow`); raises what ends the feed."""
    replica, generation = follows
    halt, loop = settings.on_poison == "halt", asyncio.get_running_loop()
    ahead: asyncio.Future[Taken | None] | None = None
    stretch = collector.Stretch()  # no cyclic collection between catch-up batches
    try:
        taken = await take(feed, stop)
        while taken is not None:
            batch, decoded = taken
            if batch.pending > settings.batch_size:  # catching up: decode the next now
                stretch.hold(len(batch.deliveries))
                ahead = asyncio.ensure_future(take(feed, stop, decoder))
            else:
                stretch.release()
            async with replica.writing:
                if replica.generation != generation:
                    return  # a rebuilt file was swapped in: follow it from its checkpoint
                model = replica.model
                settles = batch.pending <= settings.batch_size < len(batch.deliveries)
                if settles:  # a catch-up's last batch: the states too, then the WAL
                    model.versions.write_next()
                work = functools.partial(
                    apply, model, batch.deliveries, batch.last, halt, decoded=decoded
                )
                await loop.run_in_executor(applier, work)
                await feed.ack(batch)
                if settles:
                    await loop.run_in_executor(applier, model.checkpoint_wal)
                feed.follow(model.versions.aggregates)  # catch-up batches grow with them
            await _applied(nc, subjects, settings.name, replica, model, batch.pending)
            await serving.current(batch.pending <= settings.batch_size)
            taken = await (take(feed, stop) if ahead is None else ahead)
            ahead = None
    finally:
        stretch.release()
        if ahead is not None:  # taken from a feed that is closed now: dropped, not acked
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


async def _applied(
    nc: Client, subjects: Subjects, name: str, replica: Replica, model: ReadModel, pending: int
) -> None:
    """After a batch's commit and ack: clear a full-disk state, let `min_seq` waiters
    through, announce the changed tables, and set every projection's lag (`pending`
    messages left in the stream)."""
    if replica.storage is not None:
        replica.storage = None
        metrics.STORAGE_EXHAUSTED.set(0)
        log.info("storage_available", sequence=model.checkpoint)
    await replica.progress.advance(model.checkpoint)
    await _announce(nc, subjects, name, model.checkpoint, model.changed)
    for projection in model.projections:
        metrics.LAG.labels(projection).set(pending)


async def _announce(
    nc: Client, subjects: Subjects, replica: str, sequence: int, tables: Iterable[str]
) -> None:
    """Tell live queries (`gateway/live/hub.py`) that `sequence` is committed and which tables
    it changed. Best effort, core NATS: a lost one delays a live answer to the next batch."""
    if tables:
        body = _json.encode({"sequence": sequence, "tables": sorted(tables), "replica": replica})
        with contextlib.suppress(NatsError):
            await nc.publish(subjects.applied, body)
