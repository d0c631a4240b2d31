"""What operators see of the cluster: /metrics that promtool accepts, correlated logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import httpx
import pytest
from httpx_sse import aconnect_sse
from nats.aio.client import Client

from ironstar.cluster import Cluster
from tests.faults import checks
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PROMTOOL = shutil.which("promtool")


def _metrics_url(cluster: Cluster, name: str) -> str:
    member = cluster.members[name]
    return member.url if member.url.endswith("/metrics") else f"{member.url}metrics"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_accepts_every_services_metrics(cluster: Cluster) -> None:
    services = [m.name for m in cluster.members.values() if m.kind != "nats"]
    with httpx.Client(timeout=10) as http:
        for name in services:
            reply = http.get(_metrics_url(cluster, name))
            assert reply.status_code == 200, name
            checked = subprocess.run(
                [str(PROMTOOL), "check", "metrics"],
                input=reply.content,
                capture_output=True,
                check=False,
            )
            assert checked.returncode == 0, f"{name}: {checked.stdout!r} {checked.stderr!r}"


def _correlation_ids(cluster: Cluster, name: str, event: str) -> set[str]:
    """Correlation ids on the member's JSON log lines of `event`."""
    found: set[str] = set()
    for text in (cluster.logs / f"{name}.log").read_text(errors="replace").splitlines():
        if text.startswith("{") and f'"{event}"' in text:
            line = json.loads(text)
            found.update([line.get("correlation_id", ""), *line.get("correlation_ids", [])])
    return found


async def test_a_correlation_id_flows_from_command_to_projector_and_sse_logs(
    cluster: Cluster, admin: Client
) -> None:
    cid = f"corr-{uuid.uuid4().hex}"
    list_id = f"list-{uuid.uuid4().hex[:8]}"
    one, two = (m.url for m in cluster.of("gateway"))
    after = await checks.last_sequence(admin, "IRONSTAR_EVENTS")
    async with httpx.AsyncClient(timeout=10) as http:
        params = {"topics": f"todo_list:{list_id}", "client_id": f"c{uuid.uuid4().hex[:8]}"}
        headers = {"Last-Event-ID": str(after)}
        async with aconnect_sse(
            http, "GET", f"{two}api/events", params=params, headers=headers
        ) as feed:
            reply = await http.post(
                f"{one}api/commands/todo_list/{list_id}",
                json={"type": "add_todo", "payload": {"todo_id": "t", "text": "trace me"}},
                headers={"X-Correlation-Id": cid},
            )
            assert reply.status_code == 200, reply.text
            async for sse in feed.aiter_sse():
                if sse.event == "todo_added":
                    assert json.loads(sse.data)["metadata"]["correlation_id"] == cid
                    break

    def carries(name: str, event: str) -> bool:
        return cid in _correlation_ids(cluster, name, event)

    async def traced() -> dict[str, bool]:
        return {
            "writer": any(carries(m.name, "command_applied") for m in cluster.of("writer")),
            **{m.name: carries(m.name, "batch_applied") for m in cluster.of("projector")},
            "gateway-2 sse": carries("gateway-2", "sse_delivered"),
        }

    await eventually(traced, lambda found: all(found.values()), timeout=10)
