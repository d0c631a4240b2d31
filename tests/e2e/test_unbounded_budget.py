"""`policy=unbounded` has a process-wide memory budget: many clients that never read cannot
grow the gateway past it, and the feed cut off resumes with nothing lost."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from tests.support.feeds import Reader, feed, publish, todo
from tests.support.gateways import Http, Start, metric
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

BUDGET = 2_000_000


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _ids_until_lag(reader: Reader) -> tuple[list[int], dict[str, object]]:
    ids: list[int] = []
    while True:
        message = await reader.next(30)
        if message.event == "lag":
            return ids, message.data
        if message.event == "todo_added" and message.id is not None:
            ids.append(message.id)


async def test_clients_that_never_read_cannot_grow_the_gateway_past_the_unbounded_budget(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    gateway, base = start_gateway(
        sse_send_buffer_bytes=4096, sse_unbounded_budget_bytes=BUDGET, sse_unbounded_cap=100_000
    )
    assert gateway.process is not None
    stalled = http(base, receive_buffer=4096)
    params = {"topics": "todo_list", "policy": "unbounded", "capacity": "64"}
    async with contextlib.AsyncExitStack() as held:
        readers = [
            await held.enter_async_context(feed(stalled, client_id=f"u{n}", **params))
            for n in range(20)
        ]
        for reader in readers:
            await reader.until("connected")
        before = _rss_kib(gateway.process.pid)
        sequences: list[int] = []
        # ~3.6 MB per client, ~72 MB for the twenty, in texts the domain allows (≤ 200)
        for start in range(0, 8000, 1000):
            chunk = [todo("a", n, "z" * 200) for n in range(start + 1, start + 1001)]
            sequences += await publish(nc, nats_settings, chunk)
        drops = 'rate_limit_drops_total{policy="unbounded"}'
        await eventually(lambda: metric(http(base), drops), lambda n: n > 0, timeout=30)
        # every feed alone would hold ~3.6 MB, over the budget: each is ended in turn (one
        # lag apiece) and drops what still arrives, so once all twenty are the figure below
        # is the bound
        lags = "broadcast_lags_total"
        await eventually(lambda: metric(http(base), lags), lambda n: n >= 20, timeout=60)
        grown = _rss_kib(gateway.process.pid) - before
        print(f"gateway RSS grew by {grown} KiB with 20 stalled unbounded clients")
        assert grown < 30_000, f"the gateway grew by {grown} KiB past a {BUDGET} B budget"
        # the first client reads again: its stream ends with a notice naming the budget ...
        got, notice = await _ids_until_lag(readers[0])
        assert "IRONSTAR_GATEWAY_SSE_UNBOUNDED_BUDGET_BYTES" in str(notice["reason"])
    # ... and resuming from its last id loses nothing
    resume = {"Last-Event-ID": str(got[-1])} if got else {"Last-Event-ID": str(sequences[0] - 1)}
    # (a gateway that just dropped twenty flooded feeds may be busy for a while: wait longer)
    async with feed(http(base, timeout=60), resume, topics="todo_list", client_id="u0") as reader:
        while not got or got[-1] < sequences[-1]:
            message = await reader.next(30)
            if message.event == "todo_added" and message.id is not None:
                got.append(message.id)
    assert got == sequences
