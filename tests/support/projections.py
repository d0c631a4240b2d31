"""Projector test support: store events, run replicas in-process, fold the oracle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from common import bus
from common import envelope as codec
from common.catalogue import aggregate
from common.envelope import Envelope
from common.messages import QueryRequest
from common.settings import NatsSettings, ProjectorSettings
from common.subjects import Subjects
from projector import main as projector


async def store(nc: Client, settings: NatsSettings, events: Iterable[Envelope]) -> int:
    """Append envelopes to the test's stream; returns the last sequence."""
    subjects, js = Subjects(settings.prefix), nc.jetstream()
    acks = [
        await js.publish_async(subjects.events(e.aggregate_type, e.aggregate_id), codec.encode(e))
        for e in events
    ]
    done = await asyncio.gather(*acks)
    return int(done[-1].seq) if done else 0


async def ask(
    nc: Client, settings: NatsSettings, projection: str, name: str, min_seq: int = 0, **params: Any
) -> dict[str, Any]:
    """A read-model query over NATS, as the gateway sends it: {"sequence", "result"}."""
    request = QueryRequest(name=name, params=params, min_seq=min_seq, timeout_s=10)
    subjects = Subjects(settings.prefix)
    reply = await bus.request(
        nc,
        subjects.query(projection),
        msgspec.json.encode(request),
        15,
        projection,
        first=subjects.current(projection),  # a caught-up replica if any, as the gateway
    )
    answer: dict[str, Any] = msgspec.json.decode(reply)
    return answer


async def sql(nc: Client, settings: NatsSettings, text: str, min_seq: int = 0) -> list[list[Any]]:
    """The rows of a read-only SQL query over the projector replicas, once they have
    applied `min_seq`."""
    rows: list[list[Any]] = (await ask(nc, settings, "sql", "sql", min_seq, sql=text))["result"][
        "rows"
    ]
    return rows


@asynccontextmanager
async def replica(
    settings: NatsSettings, data_dir: Path, name: str = "r1", **options: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """A projector replica in this process, serving until the block ends."""
    stop, ready = asyncio.Event(), asyncio.Event()
    config = ProjectorSettings(name=name, data_dir=str(data_dir), **options)
    task = asyncio.create_task(projector.serve(settings, config, lambda _: ready.set(), stop))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield task
    finally:
        stop.set()
        await task


def fold(events: Iterable[Envelope]) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """The oracle: every aggregate folded with the domain's own `evolve`, as read-model rows
    (list, todo, text, completed, deleted) of every todo not deleted and (user, name, email,
    active)."""
    states: dict[tuple[str, str], Any] = {}
    for e in events:
        kind = aggregate(e.aggregate_type)
        key = (e.aggregate_type, e.aggregate_id)
        event = kind.from_payload(e.event_type, e.schema, e.payload)
        states[key] = kind.evolve(states.get(key, kind.initial), event)
    todos = {
        (list_id, todo_id, todo.text, todo.completed, todo.deleted)
        for (kind, list_id), state in states.items()
        if kind == "todo_list"
        for todo_id, todo in state.todos.items()
        if not todo.deleted  # a deleted todo leaves its list (the `todos` view)
    }
    users = {
        (user_id, state.name, state.email, state.active)
        for (kind, user_id), state in states.items()
        if kind == "user_profile" and state.registered
    }
    return todos, users


TODO_ROWS = "SELECT list_id, todo_id, text, completed, deleted FROM todos"
USER_ROWS = "SELECT user_id, name, email, active FROM users"


async def assert_folded(
    nc: Client, settings: NatsSettings, events: list[Envelope], last: int
) -> dict[str, Any]:
    """Assert the replica's rows at `last` are the fold of `events` (`fold`) and it counted
    every one of them; returns the `analytics` totals."""
    todos, users = fold(events)
    assert {tuple(r) for r in await sql(nc, settings, TODO_ROWS, last)} == todos
    assert {tuple(r) for r in await sql(nc, settings, USER_ROWS, last)} == users
    totals: dict[str, Any] = (await ask(nc, settings, "analytics", "totals", last))["result"]
    assert totals["events"] == len(events)
    return totals
