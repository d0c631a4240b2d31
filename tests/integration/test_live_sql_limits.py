"""A live SQL evaluation's time at the projector (`projector/queries.py`, issue 17): waiting
for a slot has its own deadline (the gateway's `timeout_s`: 429 past it, to retry), and
the query then runs its whole time limit: waiting behind others is not its fault, and a
query that mostly waited is never told (400) to narrow itself."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from common import bus
from common.errors import BadRequest, TooManyRequests
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from tests.integration.test_sql_sandbox import as_principal, running_queries
from tests.support.projections import replica, store

ENDLESS = "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 3"
LIMIT_S = 1.5


async def live_sql(nc: Client, settings: NatsSettings, actor: str, text: str, wait_s: float) -> Any:
    """A live SQL evaluation as the gateway asks it: `wait_s` to wait; the rows."""
    request = QueryRequest(
        name="sql", params={"sql": text}, timeout_s=wait_s, actor=actor, live=True
    )
    subject = Subjects(settings.prefix).query("sql")
    reply = await bus.request(nc, subject, msgspec.json.encode(request), wait_s + 10, "projector")
    return msgspec.json.decode(reply)["result"]["rows"]


@contextlib.asynccontextmanager
async def blocked(nc: Client, settings: NatsSettings, tmp_path: Path) -> AsyncIterator[None]:
    """A replica whose only SQL slot another principal's query holds for `LIMIT_S`."""
    await store(nc, settings, domain_events(20, lists=2, users=2))
    async with replica(settings, tmp_path, sql_timeout_s=LIMIT_S, sql_concurrency=1):
        blocker = asyncio.create_task(as_principal(nc, settings, "other", ENDLESS))
        await running_queries(1)
        yield
        with pytest.raises(BadRequest):
            await blocker


async def test_a_live_evaluation_that_waited_for_a_slot_still_runs_its_whole_limit(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    async with blocked(nc, nats_settings, tmp_path):
        asked = time.monotonic()
        quick = asyncio.create_task(live_sql(nc, nats_settings, "me", "SELECT 42", 3 * LIMIT_S))
        slow = asyncio.create_task(live_sql(nc, nats_settings, "you", ENDLESS, 3 * LIMIT_S))
        assert await quick == [[42]]  # it waited most of the limit, then ran
        with pytest.raises(BadRequest) as stopped:
            await slow
        ran = time.monotonic() - asked
    assert "its own running time" in stopped.value.message
    assert ran >= 2 * LIMIT_S * 0.9, f"stopped after {ran:.2f} s: its wait was counted"


async def test_a_live_evaluation_that_waits_past_its_deadline_is_a_429_to_retry(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    async with blocked(nc, nats_settings, tmp_path):
        with pytest.raises(TooManyRequests) as busy:
            await live_sql(nc, nats_settings, "me", "SELECT 42", 0.3)
        assert busy.value.detail["retry_after"] == 1


async def test_one_principals_slow_live_sql_does_not_queue_another_principals_sql(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    slow = "SELECT count(*) + {k} FROM range(300000000) WHERE range % 7 = 3"  # ~0.9 s alone
    await store(nc, nats_settings, domain_events(200, lists=2, users=2))
    async with replica(nats_settings, tmp_path, sql_timeout_s=5.0):
        stop = asyncio.Event()

        async def hog(k: int) -> None:  # always due, as a live feed after every batch
            while not stop.is_set():
                with contextlib.suppress(BadRequest, TooManyRequests):
                    await live_sql(nc, nats_settings, "hog", slow.format(k=k), 5)

        hogs = [asyncio.create_task(hog(k)) for k in range(4)]  # its 4 places, 1 running
        await running_queries(1)
        took = []
        for _ in range(15):
            started = time.monotonic()
            await as_principal(nc, nats_settings, "victim", "SELECT count(*) FROM todos")
            took.append(time.monotonic() - started)
        stop.set()
        await asyncio.gather(*hogs)
    assert statistics.median(took) < 0.2, f"the victim queued behind the hog: {took}"
