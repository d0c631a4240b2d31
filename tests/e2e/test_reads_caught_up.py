"""Reads go to a caught-up replica whenever one is (verify10 F7): a replica behind the
others (here halted before a poison event, as one catching up would be) no longer takes
a share of the reads, so a `min_seq` read is not left to wait its deadline there."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from examples.todo.history import domain_events
from tests.support.gateways import Http, Start
from tests.support.projections import replica, store
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
TOTALS = "/api/read/stream/totals"


async def _asks_current(nc: Client, subjects: Subjects, min_seq: int) -> str:
    """Who answers the caught-up replicas' subject of `stream`: "nobody", or the sequence."""
    body = msgspec.json.encode(QueryRequest(name="totals", min_seq=min_seq, timeout_s=0.5))
    try:
        reply = await nc.request(subjects.current("stream"), body, timeout=2)
    except NoRespondersError:
        return "nobody"
    return str(msgspec.json.decode(reply.data).get("sequence"))


async def test_reads_go_to_the_caught_up_replica_not_to_the_one_behind(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path, start_gateway: Start, http: Http
) -> None:
    subjects = Subjects(nats_settings.prefix)
    events = list(domain_events(10, lists=2, users=2, seed=2))
    await store(nc, nats_settings, events[:5])
    await nc.jetstream().publish(subjects.events("todo_list", "x"), b"{oops")  # sequence 6
    last = await store(nc, nats_settings, events[5:])
    _, base = start_gateway(query_timeout_s=2)
    client = http(base)
    async with replica(nats_settings, tmp_path, "halted", on_poison="halt"):  # stays at 5
        await eventually(lambda: _asks_current(nc, subjects, 0), lambda who: who == "nobody")
        async with replica(nats_settings, tmp_path, "current"):  # dead-letters 6, goes on
            await eventually(lambda: _asks_current(nc, subjects, last), lambda s: s == str(last))
            answers = [await client.get(TOTALS, params={"min_seq": last}) for _ in range(12)]
            assert [a.status_code for a in answers] == [200] * 12  # none left to the halted one
            assert {a.json()["sequence"] for a in answers} == {last}
            sql = {"sql": "SELECT sequence FROM checkpoint"}
            ad_hoc = await client.post("/api/sql", params={"min_seq": last}, json=sql)
            assert ad_hoc.status_code == 200 and ad_hoc.json()["result"]["rows"] == [[last]]
        # Only the replica behind is left: it still answers what it can (any replica does
        # when none is caught up), and a read past it waits its deadline as before.
        stale = await client.get(TOTALS)
        assert stale.status_code == 200 and stale.json()["sequence"] == 5
        assert (await client.get(TOTALS, params={"min_seq": last})).status_code == 504
