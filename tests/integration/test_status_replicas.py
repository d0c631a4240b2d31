"""`ironstar status` says where each projector replica is, not only the one that answered
the queue group (verify10b N4): each replica with a consumer is asked on its own subject,
and one that is gone is said to be down."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from common.settings import NatsSettings
from examples.todo.history import domain_events
from ironstar.commands import status
from tests.support.projections import ask, replica, store


async def test_status_reports_every_replica_and_which_is_down(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(200, lists=3, users=3, seed=4))
    async with replica(nats_settings, tmp_path / "a", "a"):
        async with replica(nats_settings, tmp_path / "b", "b"):
            await ask(nc, nats_settings, "stream", "totals", min_seq=last)
            both = (await status.gather(nats_settings, "todo_list"))["projector"]
            lines = status._service_lines({"up": True, "ms": 1}, both)
        one_gone = (await status.gather(nats_settings, "todo_list"))["projector"]
    assert [(r["name"], r["up"]) for r in both["replicas"]] == [("a", True), ("b", True)]
    assert all(r["lag"] == 0 and r["at"] == last for r in both["replicas"])  # both at the end
    assert lines[2:] == [f"  replica    {n}: up, at #{last}, 0 events behind" for n in "ab"]
    a, b = one_gone["replicas"]
    assert a["up"] and a["at"] == last
    assert not b["up"] and "projector b" in b["reason"]  # its consumer outlives it
