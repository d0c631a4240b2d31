"""What a replica answers over NATS: named queries, ad-hoc SQL, snapshots and rebuilds.

Read-model queries use a queue group per projection, so replicas share the load; each
waits for `min_seq` first (read-your-writes). A replica that is caught up (`Serving.current`)
also answers the same reads on `Subjects.current`, where the gateway asks first: a read,
with `min_seq` or not, goes to a replica that is caught up whenever one is, not to one
still catching up (verify10 F7: a `min_seq` read waited its 5 s there and answered 504).
A rebuild is for one replica (its file), so each replica answers it on a subject of its
own: `<prefix>.query.rebuild.<replica>`.

Threads: named queries run on a pool of their own and ad-hoc SQL in `Slots` (bounded, 429
past it), neither on the thread that applies events (`main.py`). Every reply is bounded
in bytes (`answers.py`).

`_Server.routes` is the table of what is answered where: to add a kind of request, add a
handler and a row there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from common import bus
from common import catalogue as catalogues
from common.errors import BadRequest, Invalid, NotFound, StorageFull, decoded
from common.messages import LiveRound, QueryRequest
from common.settings import ProjectorSettings
from common.subjects import Subjects, valid_id
from projector import answers, dependencies, liveround, metrics, sql
from projector.readmodel import ReadModel
from projector.rebuild import Rebuilder
from projector.replica import Replica
from projector.slots import Slots

log = structlog.get_logger()
_queries = msgspec.json.Decoder(QueryRequest)
_rounds = msgspec.json.Decoder(LiveRound)
_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
Run = Callable[[ReadModel, QueryRequest], Any]
"""What answers a named query or a snapshot on the named-query threads: (the model, the
request) -> a JSON-able answer, or an `_AsOf` for a live evaluation."""
SQL_HANDLERS = 256  # SQL requests handled at once; `Slots` admits few of them
NAMED_HANDLERS = 64  # named-query requests of one projection handled at once
NAMED_THREADS = 4  # named queries are short: a few threads keep them off the apply thread
ROUND_HANDLERS = 8  # live rounds handled at once (one in flight per gateway)
READS_KEPT = 1024  # SQL texts whose tables are remembered (the live queries' own)
EVERY = frozenset({dependencies.EVERY})
STORAGE_RETRY_AFTER_S = 5


class _AsOf(NamedTuple):
    """An answer and the checkpoint it is as of; a live evaluation's carries the tables it
    reads (`reads`, None for any other answer)."""

    sequence: int
    result: Any
    reads: frozenset[str] | None


class _Route(NamedTuple):
    """Requests on `subject`, shared by the replicas in `queue`, answered by `handler`, at
    most `concurrency` at once (`bus.serve`)."""

    subject: str
    queue: str
    handler: bus.Handler
    concurrency: asyncio.Semaphore


class Serving:
    """The queries a replica answers (`serve`). `current` puts it into the caught-up
    replicas' queue groups (`Subjects.current`) or takes it out; `close` stops the query
    threads, once the connection is drained."""

    def __init__(self, nc: Client, server: _Server, twins: list[_Route]) -> None:
        self._nc, self._server, self._twins = nc, server, twins
        self._subscriptions: list[Subscription] = []
        self._draining: set[asyncio.Task[None]] = set()
        self.is_current = False

    async def current(self, now: bool) -> None:
        """Answer on the caught-up subjects too (`now`), or no longer: their subscriptions
        are drained in the background (a request received already is answered; the
        drain's round trip never holds up the caller). Nothing to do if it is so already."""
        if now == self.is_current:
            return
        self.is_current = now
        if now:  # queued while NATS reconnects, so never raises for that
            for route in self._twins:
                self._subscriptions.append(await bus.serve(self._nc, *route, flush=False))
        else:
            for subscription in self._subscriptions:
                task = asyncio.create_task(_drain(subscription))
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)
            self._subscriptions = []
        metrics.CURRENT.set(int(now))
        log.info("queries_current" if now else "queries_behind")

    def close(self) -> None:
        self._server.close()


async def _drain(subscription: Subscription) -> None:
    with contextlib.suppress(NatsError):  # the connection closing: gone with it
        await subscription.drain()  # type: ignore[no-untyped-call]


async def serve(
    nc: Client,
    subjects: Subjects,
    replica: Replica,
    rebuilder: Rebuilder,
    settings: ProjectorSettings,
) -> Serving:
    """Answer queries until the connection drains (not yet as caught up: `Serving.current`).
    Raises `Invalid` if the replica's name cannot be part of a subject."""
    server = _Server(replica, rebuilder, settings, nc.max_payload)
    routes = server.routes(subjects)
    for route in routes:
        await bus.serve(nc, *route)
    prefix = subjects.query("")
    twins = [  # the reads shared by every replica (a rebuild is one replica's own)
        route._replace(subject=subjects.current(route.subject.removeprefix(prefix)))
        for route in routes
        if route.queue.startswith("projection.") and route.queue != "projection.snapshot"
    ]
    return Serving(nc, server, twins)


class _Server:
    """The handlers of one replica's requests, and the threads they run on."""

    def __init__(
        self, replica: Replica, rebuilder: Rebuilder, settings: ProjectorSettings, max_payload: int
    ) -> None:
        self.replica, self.rebuilder, self.settings = replica, rebuilder, settings
        self.max_bytes = answers.budget(max_payload, settings.max_answer_bytes)
        self.max_reply = max(self.max_bytes, max_payload - answers.HEADROOM_BYTES)  # a round's
        self.catalogue = catalogues.current()
        self.pool = ThreadPoolExecutor(NAMED_THREADS, thread_name_prefix="query")
        self.slots = Slots(
            settings.sql_concurrency, settings.sql_queue, settings.sql_per_principal, "sql"
        )
        metrics.SQL_HELD.labels(settings.name).set_function(lambda: self.slots.held)
        metrics.SQL_RUNNING.labels(settings.name).set_function(lambda: self.slots.busy)
        # The tables a live query depends on, by its SQL text, for the file now served (a
        # rebuild swaps in a file whose views may differ): asked once per evaluation.
        self.known_reads: dict[tuple[int, str], frozenset[str]] = {}

    def routes(self, subjects: Subjects) -> list[_Route]:
        """What this replica answers, where: one row per kind of request."""
        name = self.settings.name
        named = [
            _Route(
                subjects.query(projection),
                f"projection.{projection}",
                self.answer_with(projection, self.named(projection)),
                asyncio.Semaphore(NAMED_HANDLERS),
            )
            for projection in self.replica.model.projections
        ]
        snapshot = self.answer_with("snapshot", self.snapshot)
        rebuild = subjects.query(f"rebuild.{valid_id(name, 'replica')}")
        # Every SQL request reaches `adhoc` at once: its slots, not this, bound and refuse
        # them (a refusal takes microseconds, so these handlers are mostly the admitted ones).
        return [
            *named,
            _Route(
                subjects.query("sql"), "projection.sql", self.adhoc, asyncio.Semaphore(SQL_HANDLERS)
            ),
            _Route(
                subjects.query("live"),
                "projection.live",
                self.live_round,
                asyncio.Semaphore(ROUND_HANDLERS),
            ),
            _Route(
                subjects.query("snapshot"), "projection.snapshot", snapshot, asyncio.Semaphore(1)
            ),
            _Route(rebuild, f"rebuild.{name}", self.rebuild, asyncio.Semaphore(4)),
        ]

    def answer_with(self, label: str, run: Run) -> bus.Handler:
        """A handler running `run` on the named-query threads once `min_seq` is applied."""

        async def answer(msg: Msg) -> bytes:
            request = decoded(_queries, msg.data, "query request")
            started = time.monotonic()
            self.check_reachable(request.min_seq)
            sequence = await self.replica.progress.reach(request.min_seq, request.timeout_s)
            async with self.replica.reading() as model:
                work = functools.partial(run, model, request)
                result = await asyncio.get_running_loop().run_in_executor(self.pool, work)
            if not isinstance(result, _AsOf):
                result = _AsOf(max(sequence, model.checkpoint), result, None)
            storage = self.replica.storage
            return self.reply(label, started, result, {"storage_exhausted": storage})

        return answer

    async def live_round(self, msg: Msg) -> bytes:
        """A gateway's live round (`projector/liveround.py`): every key answered in one
        read transaction on a named-query thread once `min_seq` is applied (504 past
        `timeout_s`); `{"answers": [...]}`, one part per key."""
        request = decoded(_rounds, msg.data, "live round")
        started = time.monotonic()
        self.check_reachable(request.min_seq)
        await self.replica.progress.reach(request.min_seq, request.timeout_s)
        async with self.replica.reading() as model:
            work = functools.partial(
                liveround.evaluate, model, self.catalogue, request.keys, self.reads_of,
                self.max_bytes, self.max_reply, started + request.timeout_s,
            )  # fmt: skip
            reply = await asyncio.get_running_loop().run_in_executor(self.pool, work)
        metrics.QUERY_DURATION.labels("live").observe(time.monotonic() - started)
        return reply

    def check_reachable(self, min_seq: int) -> None:
        """`StorageFull` (503, retry in 5 s) when `min_seq` is past this read model and its
        disk is full: it cannot get there before space returns, so say so now."""
        model, storage = self.replica.model, self.replica.storage
        if storage is not None and min_seq > model.checkpoint:
            raise StorageFull(
                f"this read model is at sequence {model.checkpoint} and cannot apply more: "
                f"{storage}",
                retry_after=STORAGE_RETRY_AFTER_S,
            )

    def reply(self, label: str, started_s: float, answer: _AsOf, extra: dict[str, Any]) -> bytes:
        """The reply to a query (`answers.reply`), its time since `started_s`
        (`time.monotonic()`) counted in `QUERY_DURATION{label}`; `extra`'s None values left
        out, a live evaluation's `reads` added."""
        metrics.QUERY_DURATION.labels(label).observe(time.monotonic() - started_s)
        fields = {key: value for key, value in extra.items() if value is not None}
        if answer.reads is not None:
            fields["reads"] = sorted(answer.reads)
        return answers.reply(answer.sequence, answer.result, self.max_bytes, fields)

    def named(self, projection: str) -> Run:
        """How the queries of `projection` are answered: 404/422 for an unknown query or
        bad parameters (`Catalogue.params`)."""

        def run(model: ReadModel, request: QueryRequest) -> Any:
            params = self.catalogue.params(projection, request.name, request.params)
            if not request.live:
                return model.query(projection, request.name, params)
            query = self.catalogue.query(projection, request.name)
            reads = self.reads_of(model, query.sql) if query.sql and query.run is None else EVERY
            return _AsOf(*model.query_as_of(projection, request.name, params), reads)

        return run

    async def adhoc(self, msg: Msg) -> bytes:
        """Ad-hoc SQL: its time limit counts from arrival (min_seq and a slot included). A
        live evaluation waits (for `min_seq`, then a slot) at most `timeout_s` from arrival
        (429 past it: the replica was busy, to retry), then runs its whole time limit: its
        waiting behind others is not the query's fault (issue 17)."""
        arrived = time.monotonic()
        request = decoded(_queries, msg.data, "query request")
        limit_s = self.settings.sql_timeout_s
        text = request.params.get("sql")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("give the SQL text as a non-empty string", field="sql")
        principal = request.actor or ""
        waits_by = arrived + (request.timeout_s if request.live else limit_s)
        async with self.slots.admitted(principal):
            wait_s = min(request.timeout_s, limit_s)
            sequence = await self.replica.progress.reach(request.min_seq, wait_s)
            async with self.slots.slot(principal, waits_by), self.replica.reading() as model:
                deadline = (time.monotonic() if request.live else arrived) + limit_s
                answer = await self.run_sql(model, text, deadline, limit_s, request.live)
        if not request.live:
            answer = answer._replace(sequence=max(sequence, model.checkpoint))
        return self.reply("sql", arrived, answer, {})

    async def run_sql(
        self, model: ReadModel, text: str, deadline: float, limit_s: float, live: bool
    ) -> _AsOf:
        """`sql.run` on a slot's thread, interrupted if the replica swaps its file or stops;
        as of the checkpoint its transaction saw; with the tables it reads when `live`."""
        cursor = model.con.cursor()
        as_of: list[int] = []
        work = functools.partial(
            sql.run, cursor, text, deadline, self.settings.sql_max_rows, self.max_bytes,
            limit_s, as_of,
        )  # fmt: skip
        with self.replica.interruptible(sql.interrupter(cursor)):
            try:
                result = await self.slots.call(work)
            except BadRequest as exc:
                if live and exc.detail.get("limit") == "time":  # it ran the whole limit
                    raise BadRequest(
                        f"the query ran for its whole {limit_s:g} s limit (its own running "
                        "time: waiting for a slot not counted) and was stopped; narrow it "
                        "(WHERE, LIMIT) or aggregate first",
                        field="sql",
                        limit="time",
                    ) from None
                raise
        if not live:
            return _AsOf(as_of[0], result, None)
        reads = await self.slots.call(functools.partial(self.reads_of, model, text))
        return _AsOf(as_of[0], result, reads)

    def reads_of(self, model: ReadModel, text: str) -> frozenset[str]:
        """The tables the SQL `text` reads in the file now served (lower case), cached."""
        key = (self.replica.generation, text)
        found = self.known_reads.get(key)
        if found is None:
            cursor = model.con.cursor()
            try:
                found = dependencies.tables_read(cursor, text)
            finally:
                cursor.close()
            if len(self.known_reads) >= READS_KEPT:
                self.known_reads.clear()
            self.known_reads[key] = found
        return found

    def snapshot(self, model: ReadModel, request: QueryRequest) -> dict[str, Any]:
        """`{"path", "sequence", "replica"}` of a new snapshot under `<data_dir>/snapshots`;
        422 for a `storage_version` that is not text or not a DuckDB release."""
        target = Path(self.settings.data_dir).resolve() / "snapshots"
        target = target / f"{self.settings.name}-{int(time.time())}-{model.checkpoint}.duckdb"
        version = request.params.get("storage_version") or self.settings.snapshot_storage_version
        if not isinstance(version, str):
            raise Invalid("storage_version must be text such as 'v1.5.0'", field="storage_version")
        sequence = model.snapshot(target, version)
        return {"path": str(target), "sequence": sequence, "replica": self.settings.name}

    async def rebuild(self, msg: Msg) -> bytes:
        """`{"sequence", "result": <rebuild status>, ["halted": why]}` (`ironstar status`
        asks it of each replica); `start` first starts a rebuild of `params.projections`
        (404 naming an unknown one)."""
        request = decoded(_queries, msg.data, "query request")
        if request.name == "start":
            names = request.params.get("projections") or []
            unknown = sorted(set(names) - set(self.replica.model.projections))
            if unknown:
                known = ", ".join(self.replica.model.projections)
                raise NotFound(f"no projection {unknown[0]!r}; known: {known}", field="projection")
            self.rebuilder.start(self.replica, names)
        reply = {"sequence": self.replica.model.checkpoint, "result": self.rebuilder.status}
        if self.replica.halted is not None:
            reply["halted"] = self.replica.halted
        return _json.encode(reply)

    def close(self) -> None:
        """Interrupt the running queries and wait for their threads."""
        self.replica.interrupt_queries()  # so the model can close without waiting for them
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.slots.close()
