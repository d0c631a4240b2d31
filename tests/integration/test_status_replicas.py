"""`ironstar status` says where each projector replica is, not only the one that answered
the queue group (verify10b N4): each replica with a consumer is asked on its own subject,
and one that is gone is said to be down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client

from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from ironstar.commands import status
from tests.support.projections import ask, replica, store
from tests.support.waiting import eventually


async def _projector(nats_settings: NatsSettings) -> dict[str, Any]:
    found: dict[str, Any] = (await status.gather(nats_settings, "todo_list"))["projector"]
    return found


async def test_status_reports_every_replica_and_which_is_down(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(200, lists=3, users=3, seed=4))
    async with replica(nats_settings, tmp_path / "a", "a"):
        async with replica(nats_settings, tmp_path / "b", "b"):
            both = await eventually(
                lambda: _projector(nats_settings),
                lambda p: all(r["at"] == last for r in p["replicas"]),
            )
            lines = status._service_lines({"up": True, "ms": 1}, both)
        one_gone = (await status.gather(nats_settings, "todo_list"))["projector"]
    assert [(r["name"], r["up"]) for r in both["replicas"]] == [("a", True), ("b", True)]
    assert all(r["lag"] == 0 and r["at"] == last for r in both["replicas"])  # both at the end
    assert lines[2:] == [f"  replica    {n}: up, at #{last}, 0 events behind" for n in "ab"]
    a, b = one_gone["replicas"]
    assert a["up"] and a["at"] == last
    assert not b["up"] and "projector b" in b["reason"]  # its consumer outlives it


async def test_status_says_a_replica_halted_and_reports_the_furthest_on_the_projector_line(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await store(nc, nats_settings, domain_events(5, lists=2, users=2, seed=2))
    subject = Subjects(nats_settings.prefix).events("todo_list", "x")
    await nc.jetstream().publish(subject, b"{oops")  # sequence 6: b halts before it
    last = await store(nc, nats_settings, domain_events(5, lists=2, users=2, seed=3))
    async with (
        replica(nats_settings, tmp_path / "a", "a"),
        replica(nats_settings, tmp_path / "b", "b", on_poison="halt"),
    ):
        await ask(nc, nats_settings, "stream", "totals", min_seq=last)  # a is there
        seen = await eventually(
            lambda: _projector(nats_settings), lambda p: "halted" in p["replicas"][1]
        )
    a, b = seen["replicas"]
    assert (a["at"], a["lag"], status._working(a)) == (last, 0, True)
    assert (b["at"], b["up"], status._working(b)) == (5, True, False)
    assert "sequence 6" in b["halted"] and "HALTED: sequence 6" in status._position(b)
    assert (seen["at"], seen["lag"]) == (last, 0)  # the furthest, whoever took the probe
