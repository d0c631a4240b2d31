"""Faults under a steady workload on a local 3-node cluster: nothing acknowledged is lost.

Each round runs the workload (commands and min_seq queries on both gateways, an SSE client
on each), injects its fault while writes keep coming, waits until writes resume, and then
checks the stream, both projector replicas, the SSE clients and the process table.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client

from ironstar.cluster import Cluster
from tests.faults import checks
from tests.faults.conftest import REPORT, Row
from tests.faults.workload import Workload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STREAM = "IRONSTAR_EVENTS"
Fault = Callable[[Cluster, Client, Workload], Awaitable[None]]


async def run_round(name: str, cluster: Cluster, admin: Client, fault: Fault) -> None:
    started = time.monotonic()
    start_seq = await checks.last_sequence(admin, STREAM)
    lists = [f"list-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    work = Workload([m.url for m in cluster.of("gateway")], lists, start_seq)
    work.start()
    await work.acks(20)
    fault_at = time.monotonic()
    await fault(cluster, admin, work)
    await work.acks(20)
    await work.stop()

    events = await checks.read_stream(admin, STREAM, after=start_seq)
    checks.exactly_once(events, work.tally)
    await work.drain(checks.expected_positions(work.clients, events))
    checks.sse_exactly_once_in_order(work.clients, events)
    assert work.tally.stale_reads == 0, "a min_seq query answered without the write"
    await checks.replicas_equal_fold(cluster, cluster.of("gateway")[0].url, events, lists)
    checks.nothing_left_behind(cluster)

    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(work.tally.statuses.items()))
    REPORT.append(
        Row(
            round=name,
            seconds=time.monotonic() - started,
            commands=len(work.tally.acked),
            stall_s=work.tally.longest_gap(fault_at),
            errors=statuses,
            unreachable=work.tally.unreachable,
            sse_reconnects=sum(c.reconnects for c in work.clients),
            lost=0,  # checks.exactly_once failed the round otherwise
        )
    )


async def _kill_and_restart(cluster: Cluster, name: str, work: Workload) -> None:
    await asyncio.to_thread(cluster.kill, name)
    await work.acks(20)  # writes go on while it is down
    await asyncio.to_thread(cluster.start_member, name)


async def test_killing_the_stream_leader_loses_no_acknowledged_event(
    cluster: Cluster, admin: Client
) -> None:
    async def fault(cluster: Cluster, admin: Client, work: Workload) -> None:
        leader = await checks.stream_leader(admin, STREAM)
        await _kill_and_restart(cluster, leader, work)

    await run_round("kill -9 stream leader", cluster, admin, fault)


async def test_killing_a_stream_follower_loses_no_acknowledged_event(
    cluster: Cluster, admin: Client
) -> None:
    async def fault(cluster: Cluster, admin: Client, work: Workload) -> None:
        leader = await checks.stream_leader(admin, STREAM)
        follower = next(m.name for m in cluster.of("nats") if m.name != leader)
        await _kill_and_restart(cluster, follower, work)

    await run_round("kill -9 stream follower", cluster, admin, fault)


@pytest.mark.parametrize("member", ["writer-1", "projector-1", "gateway-1"])
async def test_killing_a_service_replica_loses_no_acknowledged_event(
    cluster: Cluster, admin: Client, member: str
) -> None:
    async def fault(cluster: Cluster, admin: Client, work: Workload) -> None:
        await _kill_and_restart(cluster, member, work)

    await run_round(f"kill -9 {member}", cluster, admin, fault)


async def test_a_rolling_restart_of_every_member_loses_no_acknowledged_event(
    cluster: Cluster, admin: Client
) -> None:
    async def fault(cluster: Cluster, admin: Client, work: Workload) -> None:
        for name in list(cluster.members):
            await asyncio.to_thread(cluster.stop_member, name)
            await asyncio.to_thread(cluster.start_member, name)
            await work.acks(5)

    await run_round("rolling restart (SIGTERM, one by one)", cluster, admin, fault)
