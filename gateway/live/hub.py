"""Live queries: one evaluation per distinct query, its answers fanned out to subscribers.

Projector replicas announce every committed batch on `<prefix>.applied` with the tables
it changed (`projector/main.py`). A live query's first answer comes with the tables it
reads (`projector/dependencies.py`); after that it is evaluated again only when a batch
changed one of them, at most once per its interval (the first after a quiet interval at
once, a later one when the interval opens, as of the newest batch then), in lanes
(below). Every subscriber of the same key (query, typed parameters; SQL also its
principal, whose budget it runs in) shares that one evaluation: a batch costs one query
whatever the number of subscribers. The interval is no part of the key (else each
`min_interval_ms` was a key of its own, and a few tokens filled the gateway's keys with
one query): the key runs at its fastest subscriber's interval and each feed writes at
most one answer per its own (`gateway/live/follow.py`).
A joiner (its creator too) whose resume point or `min_seq` is past the held answer makes
the key due now, or at its announcement (one evaluation per `HURRY_S` at most), never past
what was announced. Grants are checked per subscriber (`gateway/live/follow.py`).

Lanes: ad-hoc SQL (the `sql` lane) is one request per evaluation through `Backend.query`
(the projector's sandbox, per-principal places, time and byte limits), as its owner, on
one of the lane's slots (`gateway/live/lanes.py`); catalogue queries and views (the `app`
lane) run as the gateway (`LIVE`) in rounds: the keys due together go to the projector in
one request, answered in one transaction (`gateway/live/rounds.py`), so SQL can never
delay them.

Fairness: an evaluation is charged to its key's owner, the principal whose subscribe
created it (none for the built-in dashboard views); when the owner's last feed of the key
leaves, the key passes to the feed that has followed it longest (its principal, or no
one for a view's feed), so the others keep their answers and nobody pays for a key it no
longer follows. Waiting (for a slot or a round) is bounded by the evaluation's deadline
(`wait_s`; the first one's counts from the subscribe's arrival): a first evaluation that
only waited is a 429 with `Retry-After`, a later one is skipped to the next round (never
an error for waiting).

Keys: an owner creates at most `per_owner` distinct keys, and only while it holds fewer
than remain free of the principals' `max_queries` (so a few principals cannot take the
last ones from the others); keys of the dashboard's views (owned by no one, bounded by
the app's catalogue) are counted apart, against `max_queries` of their own, so no
principal can shut the dashboard's live parts out (429 past each).

The first evaluation runs in the evaluation's own task: a first subscriber that leaves
while it runs leaves it to the others.
An answer carries the sequence it is as of (read in its own transaction): subscribers
get answers in increasing sequence only, and a changed result only. Each subscriber holds
one answer at most (latest wins): a slow one skips the answers it had no time for.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from common.errors import IronstarError, Timeout, TooManyRequests, Unavailable
from gateway import metrics
from gateway.live.answer import Answer, Subscriber, vanished
from gateway.live.lanes import APP_LANE, SQL_LANE, Lanes
from gateway.live.rounds import Rounds, not_reached
from gateway.live.turns import Offers
from gateway.security.auth import ACTOR
from gateway.security.grants import PRINCIPAL, SQL, Principal

log = structlog.get_logger()
EVERY = "*"
LIVE = Principal("live", auth=False)  # app-lane evaluations run as the gateway
RETRYABLE = (Unavailable, Timeout, TooManyRequests)
HURRY_S = 0.05  # a joiner that needs a newer answer makes the key due at most this often
Key = tuple[str, str, str, str]  # projection, query, typed params as JSON, SQL's principal
Ask = Callable[[int, float], Awaitable[bytes]]  # (min_seq, seconds left) -> live reply
_json = msgspec.json.Encoder()


class Evaluation:
    """The one evaluation of a key, shared by its subscribers (in the order they came)."""

    def __init__(self, hub: Hub, key: Key, ask: Ask, owner: Principal | None):
        self.hub, self.key, self.ask, self.owner = hub, key, ask, owner
        self.lane = SQL_LANE if key[0] == SQL else APP_LANE
        self.subscribers: dict[Subscriber, None] = {}  # insertion-ordered: who came first
        self.answer: Answer | None = None
        self.reads: frozenset[str] = frozenset({EVERY})
        self.due = 0  # a sequence the answer must reach (announced, or a resume point)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.wake = asyncio.Event()
        self.changed = asyncio.Event()  # a joiner came or needs an answer now: re-check the pause
        self.hurried = False  # a joiner needs an answer newer than the one held: due now
        self.awaited: list[int] = []  # (a heap) sequences joiners wait for, not announced yet
        self.task: asyncio.Task[None] | None = None

    def interval_s(self) -> float:
        """Seconds between evaluations: the fastest interval its subscribers ask."""
        return min((one.interval_s for one in self.subscribers), default=0.0)

    def announce(self, sequence: int, tables: frozenset[str]) -> None:
        """A batch up to `sequence` committed, changing `tables` (`*`: any): due if newer
        than the answer and it touched a table the query reads."""
        reached = bool(self.awaited) and self.awaited[0] <= sequence
        while self.awaited and self.awaited[0] <= sequence:
            heapq.heappop(self.awaited)
        if self.answer is not None and sequence <= self.answer.sequence:
            return
        if reached or EVERY in tables or EVERY in self.reads or tables & self.reads:
            self.want(sequence, hurry=reached)  # a joiner waits for it: due now (attack17c M1)

    def expect(self, sequence: int, waiting: bool = True) -> None:
        """A joiner waits (`waiting`; False: no more) for an answer as of `sequence`, not
        announced yet: its announcement makes the key due within `HURRY_S`."""
        if waiting:
            heapq.heappush(self.awaited, sequence)
        elif sequence in self.awaited:
            self.awaited.remove(sequence)
            heapq.heapify(self.awaited)

    def want(self, sequence: int, hurry: bool = False) -> None:
        """Evaluate again (after the interval; `hurry`: within `HURRY_S` of the last run)
        unless the answer is as of `sequence` already."""
        if self.answer is None or sequence > self.answer.sequence:
            self.due = max(self.due, sequence)
            self.hurried = self.hurried or hurry
            self.changed.set()
            self.wake.set()

    def start(self, min_seq: int, deadline: float) -> None:
        """Evaluate the first answer (as of `min_seq` or later, by `deadline`,
        `time.monotonic()`) in a task of its own, then follow the announcements. `ready`
        resolves with the first answer or that evaluation's error (429 if it only waited)."""
        self.task = asyncio.create_task(self._run(min_seq, deadline))

    async def _run(self, min_seq: int, deadline: float) -> None:
        try:
            asked = time.monotonic()
            self._take(await self._evaluate(min_seq, deadline), asked)
        except BaseException as exc:
            shown = exc if isinstance(exc, Exception) else Unavailable("retry", retry_after=1)
            self.ready.set_exception(shown)
            self.ready.exception()  # retrieved: the subscribers waiting get it raised
            self.hub.forget(self)  # a newcomer starts afresh
            if not isinstance(exc, Exception):
                raise
            return
        self.ready.set_result(None)
        await self._follow()

    async def _follow(self) -> None:
        started = time.monotonic()
        while True:
            await self.wake.wait()
            await self._pause(started)
            self.wake.clear()
            self.hurried = False
            if self.answer is not None and self.due <= self.answer.sequence:
                continue
            started = time.monotonic()
            try:
                self._take(await self._evaluate(self.due, started + self.hub.wait_s), started)
            except RETRYABLE as exc:  # busy (waited its deadline) or unavailable: next round
                log.info("live_evaluation_retry", query=self.key[:2], error=exc.message[:200])
                self.wake.set()  # again after the interval
            except IronstarError as exc:  # e.g. an answer over the byte limit: say so
                log.warning("live_evaluation_failed", query=self.key[:2], error=exc.message[:200])
                for subscriber in self.subscribers:
                    subscriber.fail(exc.code, exc.message)

    async def _pause(self, started: float) -> None:
        """Until the interval from `started` (`time.monotonic()`) opens: the fastest
        subscriber's, or `HURRY_S` once a joiner needs a newer answer; re-checked whenever
        a subscriber joins or hurries it."""
        while True:
            self.changed.clear()
            left = started + (HURRY_S if self.hurried else self.interval_s()) - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.changed.wait()

    async def _evaluate(self, min_seq: int, deadline: float) -> bytes:
        owner = self.owner  # as of now: a handoff meanwhile charges the next round
        runs_as = owner if self.lane == SQL_LANE and owner is not None else LIVE
        PRINCIPAL.set(runs_as)
        ACTOR.set(runs_as.key)
        started = time.perf_counter()
        gate: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if self.lane == SQL_LANE:  # the app lane's unit is its round (`gateway/live/rounds.py`)
            gate = self.hub.lanes.slot(self.lane, owner, deadline)
        async with gate:
            reply = await self.ask(min_seq, max(deadline - time.monotonic(), 0.001))
        metrics.live_evaluations.labels(f"{self.key[0]}.{self.key[1]}").inc()
        metrics.live_evaluation_seconds.observe(time.perf_counter() - started)
        return reply

    def _take(self, reply: bytes, asked: float) -> None:
        """Offer the evaluation begun at `asked` (`time.monotonic()`, the key's pace: feeds
        are paced by it, `Subscriber.pace`) to every subscriber, unless it is older."""
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
        gone, seen = vanished(old.seen if old is not None else {}, body)
        self.answer = Answer(sequence, version, body, gone=gone, seen=seen, asked_at=asked)
        self.hub.offers.offer(self)  # to every subscriber, a turn of the loop per `TURN` of them

    def successor(self) -> Principal | None:
        """Whom the key passes to when its owner's last feed of it left: the principal of
        the feed that has followed it longest (None: a view's feed, free)."""
        return next(iter(self.subscribers)).owner

    def close(self) -> None:
        """Stop evaluating (nothing is sent to the subscribers any more)."""
        if self.task is not None:
            self.task.cancel()


class Hub:
    """This gateway's live queries, keyed; fed by the projectors' announcements.

    Budgets: `max_queries` distinct keys, `per_owner` of them started by one principal,
    `total` open feeds, `per_principal` of them one principal's (429 past each); the
    SQL evaluations' slots (`gateway/live/lanes.py`, `concurrency`), one round of catalogue
    keys in flight (`gateway/live/rounds.py`); `wait_s` seconds for a later evaluation
    (slot or round, `min_seq` and the query together)."""

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
        self.lanes = Lanes(concurrency)
        self.rounds = Rounds()  # the app lane's evaluations, asked together
        self.offers = Offers()  # answers fanned out to their subscribers in turns
        self.wait_s = wait_s
        self.max_queries, self.total, self.per_principal = max_queries, total, per_principal
        self.per_owner = max(1, per_owner)
        self.feeds: Counter[str] = Counter()  # open feeds per principal
        self._sub: Any = None

    def admit(self, principal: str) -> None:
        """A place for one more feed of `principal` (a principal key), or 429."""
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
        """Give back the place `admit(principal)` took."""
        self.feeds[principal] -= 1
        if self.feeds[principal] <= 0:
            del self.feeds[principal]
        metrics.live_subscriptions.dec()

    async def start(self, nc: Client, subject: str) -> None:
        """Hear the projectors' announcements on `subject` (`<prefix>.applied`)."""
        self._sub = await nc.subscribe(subject, cb=self._heard)

    async def _heard(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            sequence, tables = int(body["sequence"]), frozenset(map(str, body["tables"]))
        except (ValueError, KeyError, TypeError):
            log.warning("live_announcement_unreadable", data=msg.data[:200])
            return
        await self.rounds.hear(sequence)
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
        `key`; the answer for a resume point `after` comes when the read model reaches it:
        the held answer if it is as of `after` (and `min_seq`) already, else an evaluation
        due now, whatever the key's interval.
        The first answer is as of `min_seq` or later, by `deadline` (`time.monotonic()`,
        default `wait_s` from now). Raises the first evaluation's error (429 if it only
        waited for a slot), 504 `Timeout` if `min_seq` was not reached, 429 budgets."""
        deadline = time.monotonic() + self.wait_s if deadline is None else deadline
        wanted, heard = max(after, min_seq, 0), self.rounds.heard
        # never past what was announced (nothing heard: the projector is asked): the others
        capped = min(wanted, heard) if heard else wanted  # never wait for one's `min_seq`
        evaluation = self.evaluations.get(key)
        if evaluation is None:  # its creator is a joiner like any other (attack17c M2)
            evaluation = self._begin(key, ask, owner)
            evaluation.start(min(wanted, heard), deadline)
        subscriber.owner = owner
        evaluation.subscribers[subscriber] = None
        evaluation.changed.set()  # its interval may be the fastest now
        expected = wanted if wanted > capped else 0
        if expected:  # its announcement makes the key due at once (attack17c M1)
            evaluation.expect(expected)
        try:
            await asyncio.shield(evaluation.ready)
            if evaluation.answer is not None:  # at once if it is as of what it needs
                subscriber.offer(evaluation.answer)
            evaluation.want(capped, hurry=True)  # else due now, not at the timer
            if subscriber.latest is None and min_seq > 0:  # a joiner waits for min_seq too
                await _reached(subscriber, min_seq, deadline)
        except BaseException:
            self.leave(key, subscriber)
            raise
        finally:
            if expected and min_seq > 0:
                evaluation.expect(expected, waiting=False)

    def _begin(self, key: Key, ask: Ask, owner: Principal | None) -> Evaluation:
        self.lanes.room(owner, len(self.evaluations), self.max_queries, self.per_owner)
        evaluation = self.evaluations[key] = Evaluation(self, key, ask, owner)
        self.lanes.own(owner, +1)
        metrics.live_queries.set(len(self.evaluations))
        return evaluation

    def leave(self, key: Key, subscriber: Subscriber) -> None:
        """`subscriber` no longer follows `key`: the last one out stops the evaluation; an
        owner whose last feed of it left hands it to the next (see the module's doc)."""
        evaluation = self.evaluations.get(key)
        if evaluation is None or evaluation.subscribers.pop(subscriber, False) is False:
            return
        if not evaluation.subscribers:
            evaluation.close()
            self.forget(evaluation)
            return
        owner = evaluation.owner
        if owner is not None and all(
            one.owner is None or one.owner.key != owner.key for one in evaluation.subscribers
        ):
            evaluation.owner = evaluation.successor()
            self.lanes.own(evaluation.owner, +1)
            self.lanes.own(owner, -1)

    def forget(self, evaluation: Evaluation) -> None:
        """Drop `evaluation` (ended, or its first answer failed) and its owner's charge."""
        if self.evaluations.get(evaluation.key) is evaluation:
            del self.evaluations[evaluation.key]
            self.offers.forget(evaluation)
            self.lanes.own(evaluation.owner, -1)
            metrics.live_queries.set(len(self.evaluations))

    async def close_on(self, closing: asyncio.Event) -> None:
        """Once `closing` is set, wake every feed (each ends itself) and stop evaluating."""
        await closing.wait()
        for evaluation in list(self.evaluations.values()):
            evaluation.close()
            for subscriber in evaluation.subscribers:
                subscriber.wake.set()

    async def stop(self) -> None:
        """Stop hearing announcements and offering answers (evaluations end with their
        feeds)."""
        await self.offers.stop()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


async def _reached(subscriber: Subscriber, min_seq: int, deadline: float) -> None:
    """Wait for the subscriber's first answer (as of `min_seq` or later) till `deadline`;
    504 `Timeout` past it."""
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
            await subscriber.wake.wait()
    except TimeoutError:
        raise not_reached(min_seq) from None
