"""What a replica answers over NATS: named queries, ad-hoc SQL, snapshots and rebuilds.

Read-model queries use a queue group per projection, so replicas share the load; each
waits for `min_seq` first (read-your-writes). A rebuild is for one replica (its file), so
each replica answers it on a subject of its own: `<prefix>.query.rebuild.<replica>`.

Threads: named queries run on a pool of their own and ad-hoc SQL in `Slots` (bounded, 429
past it), neither on the thread that applies events (`main.py`). Every reply is bounded
in bytes (`answers.py`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from common import bus
from common import catalogue as catalogues
from common.errors import Invalid, NotFound, StorageFull, invalid_from_msgspec
from common.messages import QueryRequest
from common.settings import ProjectorSettings
from common.subjects import Subjects, valid_id
from projector import answers, dependencies, metrics, sql
from projector.readmodel import ReadModel
from projector.rebuild import Rebuilder
from projector.replica import Replica
from projector.slots import Slots

_queries = msgspec.json.Decoder(QueryRequest)
_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
Run = Callable[[ReadModel, QueryRequest], Any]
SQL_HANDLERS = 256  # SQL requests handled at once; `Slots` admits few of them
NAMED_THREADS = 4  # named queries are short: a few threads keep them off the apply thread
READS_KEPT = 1024  # SQL texts whose tables are remembered (the live queries' own)
EVERY = frozenset({dependencies.EVERY})


class _AsOf(NamedTuple):
    """A live evaluation's answer: the checkpoint it is as of and the tables it reads."""

    sequence: int
    result: Any
    reads: frozenset[str]


async def serve(
    nc: Client,
    subjects: Subjects,
    replica: Replica,
    rebuilder: Rebuilder,
    settings: ProjectorSettings,
) -> Callable[[], None]:
    """Answer queries until the connection drains; returns what stops their threads."""
    named_pool = ThreadPoolExecutor(NAMED_THREADS, thread_name_prefix="query")
    adhoc_slots = Slots(
        settings.sql_concurrency, settings.sql_queue, settings.sql_per_principal, "sql"
    )
    metrics.SQL_HELD.labels(settings.name).set_function(lambda: adhoc_slots.held)
    metrics.SQL_RUNNING.labels(settings.name).set_function(lambda: adhoc_slots.busy)
    max_bytes = answers.budget(nc.max_payload, settings.max_answer_bytes)

    def answer_with(label: str, run: Run) -> bus.Handler:
        async def answer(msg: Msg) -> bytes:
            request = _decode(msg.data)
            started = time.perf_counter()
            if replica.storage is not None and request.min_seq > replica.model.checkpoint:
                raise StorageFull(  # it cannot get there before space returns: say so now
                    f"this read model is at sequence {replica.model.checkpoint} and cannot "
                    f"apply more: {replica.storage}",
                    retry_after=5,
                )
            sequence = await replica.progress.reach(request.min_seq, request.timeout_s)
            async with replica.reading() as model:
                work = functools.partial(run, model, request)
                result = await asyncio.get_running_loop().run_in_executor(named_pool, work)
            metrics.QUERY_DURATION.labels(label).observe(time.perf_counter() - started)
            extra: dict[str, Any] = {}
            if replica.storage is not None:
                extra["storage_exhausted"] = replica.storage
            if isinstance(result, _AsOf):  # a live evaluation
                extra["reads"] = sorted(result.reads)
                return answers.reply(result.sequence, result.result, max_bytes, extra)
            return answers.reply(max(sequence, model.checkpoint), result, max_bytes, extra)

        return answer

    async def adhoc(msg: Msg) -> bytes:
        """Ad-hoc SQL: its time limit counts from arrival (min_seq and a slot included); a
        live evaluation's is at most the time its gateway has left (`timeout_s`)."""
        arrived = time.monotonic()
        request = _decode(msg.data)
        limit = min(settings.sql_timeout_s, request.timeout_s) if request.live else None
        deadline = arrived + (settings.sql_timeout_s if limit is None else limit)
        text = request.params.get("sql")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("give the SQL text as a non-empty string", field="sql")
        principal = request.actor or ""
        async with adhoc_slots.admitted(principal):
            wait = min(request.timeout_s, settings.sql_timeout_s)
            sequence = await replica.progress.reach(request.min_seq, wait)
            async with adhoc_slots.slot(principal, deadline), replica.reading() as model:
                cursor = model.con.cursor()
                as_of: list[int] = []
                work = functools.partial(
                    sql.run, cursor, text, deadline, settings.sql_max_rows, max_bytes,
                    deadline - arrived, as_of,
                )  # fmt: skip
                with replica.interruptible(sql.interrupter(cursor)):
                    result = await adhoc_slots.call(work)
                if request.live:
                    reads = await adhoc_slots.call(functools.partial(reads_of, model, text))
        metrics.QUERY_DURATION.labels("sql").observe(time.monotonic() - arrived)
        if request.live:
            return answers.reply(as_of[0], result, max_bytes, {"reads": sorted(reads)})
        return answers.reply(max(sequence, model.checkpoint), result, max_bytes)

    def named(projection: str) -> Run:
        def run(model: ReadModel, request: QueryRequest) -> Any:
            params = catalogue.params(projection, request.name, request.params)  # 404, 422
            if not request.live:
                return model.query(projection, request.name, params)
            query = catalogue.query(projection, request.name)
            reads = reads_of(model, query.sql) if query.sql and query.run is None else EVERY
            return _AsOf(*model.query_as_of(projection, request.name, params), reads)

        return run

    # The tables a live query depends on, by its SQL text, for the file now served (a
    # rebuild swaps in a file whose views may differ): asked once per evaluation.
    known_reads: dict[tuple[int, str], frozenset[str]] = {}

    def reads_of(model: ReadModel, text: str) -> frozenset[str]:
        key = (replica.generation, text)
        found = known_reads.get(key)
        if found is None:
            cursor = model.con.cursor()
            try:
                found = dependencies.tables_read(cursor, text)
            finally:
                cursor.close()
            if len(known_reads) >= READS_KEPT:
                known_reads.clear()
            known_reads[key] = found
        return found

    catalogue = catalogues.current()

    def snapshot(model: ReadModel, request: QueryRequest) -> Any:
        target = Path(settings.data_dir).resolve() / "snapshots"
        target = target / f"{settings.name}-{int(time.time())}-{model.checkpoint}.duckdb"
        version = request.params.get("storage_version") or settings.snapshot_storage_version
        if not isinstance(version, str):
            raise Invalid("storage_version must be text such as 'v1.5.0'", field="storage_version")
        sequence = model.snapshot(target, version)
        return {"path": str(target), "sequence": sequence, "replica": settings.name}

    async def rebuild(msg: Msg) -> bytes:
        request = _decode(msg.data)
        if request.name == "start":
            names = request.params.get("projections") or []
            unknown = sorted(set(names) - set(replica.model.projections))
            if unknown:
                known = ", ".join(replica.model.projections)
                raise NotFound(f"no projection {unknown[0]!r}; known: {known}", field="projection")
            rebuilder.start(replica, names)
        return _json.encode({"sequence": replica.model.checkpoint, "result": rebuilder.status})

    for projection in replica.model.projections:
        await bus.serve(
            nc,
            subjects.query(projection),
            f"projection.{projection}",
            answer_with(projection, named(projection)),
            concurrency=64,
        )
    # Every SQL request reaches `adhoc` at once: its slots, not this, bound and refuse them
    # (a refusal takes microseconds, so these handlers are mostly the admitted ones).
    await bus.serve(nc, subjects.query("sql"), "projection.sql", adhoc, SQL_HANDLERS)
    await bus.serve(
        nc, subjects.query("snapshot"), "projection.snapshot", answer_with("snapshot", snapshot), 1
    )
    mine = subjects.query(f"rebuild.{valid_id(settings.name, 'replica')}")
    await bus.serve(nc, mine, f"rebuild.{settings.name}", rebuild, 4)

    def close() -> None:
        replica.interrupt_queries()  # so the model can close without waiting for them
        named_pool.shutdown(wait=True, cancel_futures=True)
        adhoc_slots.close()

    return close


def _decode(data: bytes) -> QueryRequest:
    try:
        return _queries.decode(data)
    except msgspec.ValidationError as exc:
        raise invalid_from_msgspec(exc, "query request") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the query request is not JSON: {exc}") from None
