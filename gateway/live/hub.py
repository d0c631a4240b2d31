"""Live queries: one evaluation per distinct query, its answers fanned out to subscribers.

Projector replicas announce every committed batch on `<prefix>.applied` with the tables
it changed (`projector/main.py`). A live query's first answer comes with the tables it
reads (`projector/dependencies.py`); after that it is evaluated again only when a batch
changed one of them, at most once per its interval, through `Backend.query` (so the
projector's sandbox, slots, time and byte limits apply), in lanes (below). Every subscriber
of the same key (query, typed parameters, interval) shares that one evaluation: a batch
costs one query whatever the number of subscribers. Grants are checked per subscriber when
it subscribes (`gateway/livefeed.py`).

Fairness: an evaluation is charged to its key's owner, the principal whose subscribe
created it (none for the built-in dashboard views). Ad-hoc SQL runs in the `sql` lane as
its owner (so the projector's per-principal SQL places apply, shared with the owner's own
`POST /api/sql`); catalogue queries and views, cheap and declared by the app, run in the
`app` lane as the gateway (`LIVE`), which SQL cannot occupy. Each lane runs at most
`live_concurrency` evaluations at once, one owner at most half of them (at least one).
Waiting for a slot is bounded by the evaluation's deadline (`wait_s`; the first one's
counts from the subscribe's arrival): a first evaluation that only waited is a 429 with
`Retry-After`, a later one is skipped to the next round (never an error for waiting).
An owner creates at most `per_owner` distinct keys (429 past it).

An answer carries the sequence it is as of (read in its own transaction): subscribers
get answers in increasing sequence only, and a changed result only. Each subscriber holds
one answer at most (latest wins): a slow one skips the answers it had no time for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from common.errors import IronstarError, Timeout, TooManyRequests, Unavailable
from gateway import metrics
from gateway.security.auth import ACTOR
from gateway.security.grants import PRINCIPAL, SQL, Principal

log = structlog.get_logger()
EVERY = "*"
LIVE = Principal("live", auth=False)  # app-lane evaluations run as the gateway
RETRYABLE = (Unavailable, Timeout, TooManyRequests)
Key = tuple[str, str, str, int]  # projection, query, typed params as JSON, interval ms
Ask = Callable[[int, float], Awaitable[bytes]]  # (min_seq, seconds left) -> live reply
SQL_LANE, APP_LANE = "sql", "app"
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Answer:
    """One answer: as of `sequence`; `version` changes only when the result does. Its
    frames are rendered once per format, whatever the number of subscribers."""

    sequence: int
    version: int
    body: dict[str, Any]  # {"sequence", "result", "truncated"?}
    frames: dict[str, bytes] = field(default_factory=dict)

    def frame(self, style: str, render: Callable[[Answer], bytes]) -> bytes:
        found = self.frames.get(style)
        if found is None:
            found = self.frames[style] = render(self)
        return found


@dataclass(eq=False)
class Subscriber:
    """One feed's place: the latest answer it has not written yet (latest wins)."""

    after: int = -1  # the sequence of the client's answer (Last-Event-ID), -1: none
    version: int = -1  # the version it wrote last
    latest: Answer | None = None
    error: dict[str, Any] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, answer: Answer) -> None:
        if answer.sequence >= self.after and answer.version != self.version:
            self.latest = answer
            self.wake.set()

    def take(self) -> Answer | None:
        answer, self.latest = self.latest, None
        if answer is None or answer.sequence < self.after or answer.version == self.version:
            return None
        self.after, self.version = answer.sequence, answer.version
        return answer


class Evaluation:
    """The one evaluation of a key, shared by its subscribers."""

    def __init__(self, hub: Hub, key: Key, ask: Ask, owner: Principal | None, lane: str):
        self.hub, self.key, self.ask, self.owner, self.lane = hub, key, ask, owner, lane
        self.interval_s = key[3] / 1000
        self.subscribers: set[Subscriber] = set()
        self.answer: Answer | None = None
        self.reads: frozenset[str] = frozenset({EVERY})
        self.due = 0  # a sequence the answer must reach (announced, or a resume point)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def announce(self, sequence: int, tables: frozenset[str]) -> None:
        if self.answer is not None and sequence <= self.answer.sequence:
            return
        if EVERY in tables or EVERY in self.reads or tables & self.reads:
            self.want(sequence)

    def want(self, sequence: int) -> None:
        if self.answer is None or sequence > self.answer.sequence:
            self.due = max(self.due, sequence)
            self.wake.set()

    async def first(self, min_seq: int, deadline: float) -> None:
        """The first answer, asked as the first subscriber (its grants and budget), by
        `deadline` (`time.monotonic()`): 429 if it only waited for a slot till then."""
        try:
            self._take(await self._evaluate(min_seq, deadline))
        except BaseException as exc:
            shown = exc if isinstance(exc, Exception) else Unavailable("retry", retry_after=1)
            self.ready.set_exception(shown)
            self.ready.exception()  # retrieved: the subscribers waiting get it raised
            raise
        self.ready.set_result(None)
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        runs_as = self.owner if self.lane == SQL_LANE and self.owner is not None else LIVE
        PRINCIPAL.set(runs_as)
        ACTOR.set(runs_as.key)
        started = time.monotonic()
        while True:
            await self.wake.wait()
            await asyncio.sleep(max(0.0, started + self.interval_s - time.monotonic()))  # rate
            self.wake.clear()
            if self.answer is not None and self.due <= self.answer.sequence:
                continue
            started = time.monotonic()
            try:
                self._take(await self._evaluate(self.due, started + self.hub.wait_s))
            except RETRYABLE as exc:  # busy (waited its deadline) or unavailable: next round
                log.info("live_evaluation_retry", query=self.key[:2], error=exc.message[:200])
                self.wake.set()  # again after the interval
            except IronstarError as exc:  # e.g. an answer over the byte limit: say so
                log.warning("live_evaluation_failed", query=self.key[:2], error=exc.message[:200])
                for subscriber in self.subscribers:
                    subscriber.error = {"code": exc.code, "message": exc.message}
                    subscriber.wake.set()

    async def _evaluate(self, min_seq: int, deadline: float) -> bytes:
        started = time.perf_counter()
        async with self.hub.slot(self.lane, self.owner, deadline):
            reply = await self.ask(min_seq, max(deadline - time.monotonic(), 0.001))
        metrics.live_evaluations.labels(f"{self.key[0]}.{self.key[1]}").inc()
        metrics.live_evaluation_seconds.observe(time.perf_counter() - started)
        return reply

    def _take(self, reply: bytes) -> None:
        body = json.loads(reply)
        self.reads = frozenset(body.pop("reads", None) or (EVERY,))
        body.pop("storage_exhausted", None)
        sequence = int(body["sequence"])
        old = self.answer
        if old is not None and sequence < old.sequence:
            return  # an older replica answered: never older after newer
        same = old is not None and _json.encode(body.get("result")) == _json.encode(
            old.body.get("result")
        ) and body.get("truncated") == old.body.get("truncated")  # fmt: skip
        version = old.version if same and old is not None else (old.version + 1 if old else 0)
        self.answer = Answer(sequence, version, body)
        for subscriber in self.subscribers:
            subscriber.offer(self.answer)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Hub:
    """This gateway's live queries, keyed; fed by the projectors' announcements."""

    def __init__(
        self,
        concurrency: int,
        max_queries: int,
        total: int,
        per_principal: int,
        per_owner: int = 64,
        wait_s: float = 5.0,
    ):
        self.evaluations: dict[Key, Evaluation] = {}
        self.concurrency, self.wait_s = concurrency, wait_s
        self.lanes = {lane: asyncio.Semaphore(concurrency) for lane in (SQL_LANE, APP_LANE)}
        self.max_queries, self.total, self.per_principal = max_queries, total, per_principal
        self.per_owner = max(1, per_owner)
        self.feeds: Counter[str] = Counter()  # open feeds per principal
        self.owned: Counter[str] = Counter()  # distinct keys per owner
        self._running_of: dict[str, asyncio.Semaphore] = {}  # per owner with keys
        self._sub: Any = None

    @contextlib.asynccontextmanager
    async def slot(
        self, lane: str, owner: Principal | None, deadline: float
    ) -> AsyncIterator[None]:
        """One of `lane`'s slots (and one of `owner`'s half of them) free before `deadline`
        (`time.monotonic()`), else 429 with Retry-After (the gateway was busy)."""
        gates = [self.lanes[lane]]
        if owner is not None:
            gates.insert(0, self._running_of[owner.key])
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    for gate in gates:
                        await gate.acquire()
                        held.callback(gate.release)
            except TimeoutError:
                raise TooManyRequests(
                    f"no live-query slot of this gateway's {self.concurrency} came free before "
                    "the query's time limit; retry in 1 s",
                    retry_after=1,
                    limit="live_concurrency",
                ) from None
            yield

    def admit(self, principal: str) -> None:
        """A place for one more feed of `principal`, or 429."""
        if self.feeds.total() >= self.total:
            raise TooManyRequests(
                f"this gateway serves {self.total} live-query feeds, its limit; retry later",
                retry_after=5,
                limit="live_subscriptions",
            )
        if self.feeds[principal] >= self.per_principal:
            raise TooManyRequests(
                f"you have {self.per_principal} live-query feeds open on this gateway, the most "
                "one principal may; close one first",
                retry_after=5,
                limit="live_per_principal",
            )
        self.feeds[principal] += 1
        metrics.live_subscriptions.inc()

    def release(self, principal: str) -> None:
        self.feeds[principal] -= 1
        if self.feeds[principal] <= 0:
            del self.feeds[principal]
        metrics.live_subscriptions.dec()

    async def start(self, nc: Client, subject: str) -> None:
        self._sub = await nc.subscribe(subject, cb=self._heard)

    async def _heard(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            sequence, tables = int(body["sequence"]), frozenset(map(str, body["tables"]))
        except (ValueError, KeyError, TypeError):
            log.warning("live_announcement_unreadable", data=msg.data[:200])
            return
        for evaluation in list(self.evaluations.values()):
            evaluation.announce(sequence, tables)

    async def subscribe(
        self,
        key: Key,
        ask: Ask,
        after: int,
        subscriber: Subscriber,
        owner: Principal | None = None,
        deadline: float | None = None,
        min_seq: int = 0,
    ) -> None:
        """Join (or start, charged to `owner`; None: a built-in view) the evaluation of
        `key`; the answer for a resume point `after` comes when the read model reaches it.
        The first answer is as of `min_seq` or later, by `deadline` (`time.monotonic()`,
        default `wait_s` from now). Raises the first evaluation's error; 429 budgets."""
        deadline = time.monotonic() + self.wait_s if deadline is None else deadline
        evaluation = self.evaluations.get(key)
        if evaluation is None:
            if len(self.evaluations) >= self.max_queries:
                raise TooManyRequests(
                    f"this gateway follows {self.max_queries} distinct live queries, its "
                    "limit; follow one of those, or retry later",
                    retry_after=5,
                    limit="live_queries",
                )
            if owner is not None and self.owned[owner.key] >= self.per_owner:
                raise TooManyRequests(
                    f"you started {self.per_owner} distinct live queries on this gateway, the "
                    "most one principal may; close one, or follow one of those",
                    retry_after=5,
                    limit="live_queries_per_principal",
                )
            lane = SQL_LANE if key[0] == SQL else APP_LANE
            evaluation = self.evaluations[key] = Evaluation(self, key, ask, owner, lane)
            self._own(owner, +1)
            metrics.live_queries.set(len(self.evaluations))
            evaluation.subscribers.add(subscriber)
            try:
                await evaluation.first(max(after, min_seq, 0), deadline)
            except BaseException:
                self.leave(key, subscriber)
                raise
        else:
            evaluation.subscribers.add(subscriber)
            try:
                await asyncio.shield(evaluation.ready)
            except BaseException:
                self.leave(key, subscriber)
                raise
        if evaluation.answer is not None:
            subscriber.offer(evaluation.answer)
        evaluation.want(after)
        if subscriber.latest is None and min_seq > 0:  # a joiner waits for min_seq too
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    await subscriber.wake.wait()
            except TimeoutError:
                self.leave(key, subscriber)
                raise Timeout(
                    f"the read model did not reach sequence {min_seq} in time; retry later or "
                    "with a smaller min_seq",
                    min_seq=min_seq,
                ) from None

    def leave(self, key: Key, subscriber: Subscriber) -> None:
        evaluation = self.evaluations.get(key)
        if evaluation is None:
            return
        evaluation.subscribers.discard(subscriber)
        if not evaluation.subscribers:
            evaluation.close()
            del self.evaluations[key]
            self._own(evaluation.owner, -1)
            metrics.live_queries.set(len(self.evaluations))

    def _own(self, owner: Principal | None, change: int) -> None:
        if owner is None:
            return
        if not self.owned[owner.key]:
            self._running_of[owner.key] = asyncio.Semaphore(max(1, self.concurrency // 2))
        self.owned[owner.key] += change
        if self.owned[owner.key] <= 0:
            del self.owned[owner.key], self._running_of[owner.key]

    async def close_on(self, closing: asyncio.Event) -> None:
        """Once `closing` is set, wake every feed (each ends itself) and stop evaluating."""
        await closing.wait()
        for evaluation in list(self.evaluations.values()):
            evaluation.close()
            for subscriber in evaluation.subscribers:
                subscriber.wake.set()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
