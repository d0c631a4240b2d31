"""A replica answers as caught up (`Subjects.current`, where the gateway asks first) only
while at most `batch_size` events wait: not while it catches up, at once when it starts
with nothing to catch up, and no longer once it stops before what the others apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client
from structlog.testing import capture_logs

from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from tests.support.projections import ask, replica, store
from tests.support.waiting import soon


def _said(logs: list[dict[str, Any]]) -> list[str]:
    wanted = ("batch_applied", "queries_current", "queries_behind")
    return [entry["event"] for entry in logs if entry["event"] in wanted]


async def test_a_replica_catching_up_joins_the_caught_up_ones_only_at_the_end(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(3_000, lists=10, users=10, seed=5))
    options = {"batch_size": 100, "catchup_batch_size": 500, "catchup_process_above": 0}
    with capture_logs() as logs:
        async with replica(nats_settings, tmp_path, "late", **options):
            answer = await ask(nc, nats_settings, "stream", "totals", min_seq=last)
    said = _said(logs)
    assert answer["result"]["events"] == 3_000
    assert said.count("queries_current") == 1 and "queries_behind" not in said
    catching_up = said[: said.index("queries_current")]
    assert len(catching_up) >= 3000 // 500 - 1  # its catch-up batches, none as caught up


async def test_a_replica_with_nothing_to_catch_up_is_current_at_once_and_leaves_on_halting(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        async with replica(nats_settings, tmp_path, "fresh", on_poison="halt"):
            await soon(lambda: "queries_current" in _said(logs))  # once its feed started
            assert _said(logs) == ["queries_current"]  # before any batch: nothing waits
            subject = Subjects(nats_settings.prefix).events("todo_list", "x")
            poison = (await nc.jetstream().publish(subject, b"{oops")).seq
            answer = await ask(nc, nats_settings, "stream", "totals", min_seq=poison - 1)
    assert answer["sequence"] == poison - 1 == 0
    assert _said(logs) == ["queries_current", "queries_behind"]  # halted: behind for good
