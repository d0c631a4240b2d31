"""Messages no one can read, and command ids, over real processes (issue 12, items 2, 3).

The poison messages are published straight into the stream by a client with the rights
(the tests' server has no users), as an operator's tool or a buggy producer could.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from common.envelope import utc_now, uuid7
from common.settings import NatsSettings
from tests.support.feeds import feed, make, publish, todo
from tests.support.gateways import metric
from tests.support.processes import Service
from tests.support.projections import sql
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def _poisoned(nc: Client, settings: NatsSettings, list_id: str) -> list[int]:
    """A todo, four messages no feed can show, a todo: their sequences."""
    where = f"todo_list.{list_id}"
    return await publish(
        nc,
        settings,
        [
            todo(list_id, 1),
            (where, b"not an envelope"),
            (where, make("todo_list", list_id, 2, "lag", {})),  # a feed message's name
            (where, make("todo_list", "someone-else", 2, "todo_added", {})),  # wrong subject
            (where, make("todo_list", list_id, 2, "todo_added", {"todo_id": "x y", "text": "t"})),
            todo(list_id, 2),
        ],
    )


async def test_every_feed_format_shows_poison_as_skipped_with_its_id_and_goes_on(
    stack: Stack, nc: Client, nats_settings: NatsSettings
) -> None:
    list_id = f"p{uuid.uuid4().hex[:8]}"
    seqs = await _poisoned(nc, nats_settings, list_id)
    topics = f"todo_list:{list_id}"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        async with feed(client, topics=topics, last_event_id="0") as plain:
            got = await plain.events(6)
            assert [(m.event, m.id) for m in got] == [
                ("todo_added", seqs[0]),
                *[("skipped", s) for s in seqs[1:5]],  # an id no command makes: as datastar
                ("todo_added", seqs[5]),
            ]
            assert got[1].data["reason"].startswith("cannot be decoded")
            (more,) = await publish(nc, nats_settings, [todo(list_id, 3)])
            assert [m.id for m in await plain.events(1)] == [more]  # still live
        async with feed(client, topics=topics, format="datastar", last_event_id="0") as ds:
            ids: list[int] = []
            while not ids or ids[-1] < more:
                message = (await ds.events(1))[0]  # only the signals frame carries an id
                ids += [message.id] if message.event == "datastar-patch-signals" else []
            assert ids == [*seqs, more]
        async with feed(client, topics=topics, batch_ms="50", last_event_id="0") as batched:
            entries: list[dict[str, Any]] = []
            while not entries or entries[-1]["sequence"] < more:
                entries += (await batched.events(1))[0].data
            assert [e["sequence"] for e in entries] == [*seqs, more]
            assert [("skipped" in e) for e in entries] == [
                False,
                True,
                True,
                True,
                True,
                False,
                False,
            ]
        resume = {"Last-Event-ID": str(seqs[1])}
        async with feed(client, resume, topics=topics) as resumed:
            assert [m.id for m in await resumed.events(5)] == [*seqs[2:], more]
        # counted once per reading of each unreadable message: feeds served from the live
        # tail share its reading (its ring holds the stream's last events), pulls read anew
        assert await metric(client, "sse_skipped_events_total") >= len(seqs[1:5])


async def test_the_writer_answers_a_poisoned_aggregate_with_a_500_naming_the_sequence(
    stack: Stack, nc: Client, nats_settings: NatsSettings
) -> None:
    list_id, newer = f"w{uuid.uuid4().hex[:8]}", f"n{uuid.uuid4().hex[:8]}"
    stack.command(list_id, "add_todo", todo_id="a", text="A")
    (garbage,) = await publish(nc, nats_settings, [(f"todo_list.{list_id}", b"\x00\xff{")])
    stack.command(newer, "add_todo", todo_id="a", text="A")
    (archived,) = await publish(
        nc,
        nats_settings,
        [(f"todo_list.{newer}", make("todo_list", newer, 2, "todo_archived", {}))],
    )
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        for aggregate, sequence in ((list_id, garbage), (newer, archived)):
            for _ in range(2):  # the same answer every time, not a 503 to retry
                reply = await client.post(
                    f"/api/commands/todo_list/{aggregate}",
                    json={"type": "add_todo", "payload": {"todo_id": "b", "text": "B"}},
                )
                assert reply.status_code == 500, reply.text
                assert "Retry-After" not in reply.headers
                body = reply.json()
                assert (body["error"], body["sequence"]) == ("undecidable", sequence)
        async with feed(client, topics=f"todo_list:{newer}", last_event_id="0") as plain:
            got = await plain.events(2)  # a type this version does not know: skipped, as
            assert [(m.event, m.id) for m in got][-1] == ("skipped", archived)  # the writer


def _post(client: httpx.Client, list_id: str, command_id: str, **payload: str) -> httpx.Response:
    body = {"type": "add_todo", "payload": payload, "command_id": command_id}
    return client.post(f"/api/commands/todo_list/{list_id}", json=body)


def test_command_ids_over_http_are_per_aggregate_and_per_command_across_a_writer_restart(
    stack: Stack,
) -> None:
    one, two = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        first = _post(client, one, "cmd-1", todo_id="t", text="T").json()
        elsewhere = _post(client, two, "cmd-1", todo_id="t", text="T").json()
        assert not first.get("duplicate") and not elsewhere.get("duplicate")
        assert elsewhere["version"] == 1 and elsewhere["sequence"] != first["sequence"]
        writer = stack.services[0]
        for restarted in (False, True):
            if restarted:  # a cold cache reads the same answers from the stream
                writer.stop()
                writer = Service("writer", stack.env, stack.workdir).start()
                stack.services[0] = writer
            retry = _post(client, one, "cmd-1", todo_id="t", text="T")
            assert retry.status_code == 200 and retry.json()["duplicate"] is True
            assert retry.json()["sequence"] == first["sequence"]
            reused = _post(client, one, "cmd-1", todo_id="u", text="other")
            assert reused.status_code == 409, reused.text
            assert reused.json()["error"] == "command_id_reused"
            assert reused.json()["field"] == "command_id"


def _envelope(list_id: str, version: int, event_type: str, **payload: object) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "aggregate_type": "todo_list",
        "aggregate_id": list_id,
        "version": version,
        "event_type": event_type,
        "schema": 2 if event_type == "todo_added" else 1,
        "occurred_at": utc_now(),
        "payload": payload,
        "metadata": {"command_id": uuid7(), "correlation_id": "outsider"},
    }


def _poisons(list_id: str) -> list[dict[str, Any]]:
    """Envelopes an outsider with publish rights sends after todo `a` (version 1): first
    `UNREADABLE` with a field outside its domain, then events its history cannot hold."""
    added = _envelope(list_id, 2, "todo_added", todo_id="b", text="B")
    return [
        {**added, "version": 2**63 - 1},
        {**added, "version": 2**63},
        {**added, "version": 2**70},
        {**added, "occurred_at": "yesterday\r"},
        {**added, "occurred_at": "2026-02-30T00:00:00Z"},
        {**added, "schema": 99},
        {**added, "payload": {"todo_id": 'b"><img src=x onerror=alert(1)>', "text": "B"}},
        _envelope(list_id, 2, "todo_added", todo_id="a", text="again"),  # a todo added twice
        {**added, "version": 1},  # a version repeated
        {**added, "version": 7},  # a version skipped
        _envelope(list_id, 2, "todo_completed", todo_id="ghost"),  # a todo never added
    ]


UNREADABLE = 7


def _items(stack: Stack, list_id: str, min_seq: int) -> list[str]:
    reply = httpx.get(
        f"{stack.url}/api/todo-lists/{list_id}", params={"min_seq": min_seq}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    return [item["todo_id"] for item in reply.json()["result"]["items"]]


async def test_the_stack_survives_each_poison_message_and_a_restart_reading_one_rule(
    stack: Stack, nc: Client, nats_settings: NatsSettings
) -> None:
    list_id, good = f"x{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    stack.command(list_id, "add_todo", todo_id="a", text="A")
    where = f"todo_list.{list_id}"
    poisons = [json.dumps(p).encode() for p in _poisons(list_id)]
    seqs = await publish(nc, nats_settings, [(where, body) for body in poisons])
    stack.command(good, "add_todo", todo_id="zz", text="Z")
    last = int(stack.command(good, "complete_todo", todo_id="zz")["sequence"])  # type: ignore[call-overload]
    projector = stack.services[1]
    for restart in (False, True):
        if restart:  # the stream redelivers nothing it cannot apply: no crash loop
            assert projector.stop() == 0
            projector = stack.services[1] = Service("projector", stack.env, stack.workdir).start()
        assert _items(stack, list_id, last) == ["a"]  # the fold of the good events
        assert _items(stack, good, last) == ["zz"]
        assert projector.process is not None and projector.process.poll() is None
    rows = await sql(nc, nats_settings, "SELECT sequence, subject FROM dead_letters", last)
    subject = f"{nats_settings.prefix}.events.{where}"
    assert sorted(rows) == [[s, subject] for s in seqs]
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        # the writer reads the same message the same way: undecidable at the first poison
        refused = await client.post(
            f"/api/commands/todo_list/{list_id}",
            json={"type": "add_todo", "payload": {"todo_id": "c", "text": "C"}},
        )
        assert refused.status_code == 500, refused.text
        assert (refused.json()["error"], refused.json()["sequence"]) == ("undecidable", seqs[0])
        async with feed(client, topics=f"todo_list:{list_id}", last_event_id="0") as plain:
            got = [(m.event, m.id) for m in await plain.events(1 + len(seqs))][1:]
            # A feed checks each message, not the history (no state): what it cannot read
            # is skipped, what the history cannot hold is shown (the projector refuses it).
            assert got[:UNREADABLE] == [("skipped", s) for s in seqs[:UNREADABLE]]
            assert all(event != "skipped" for event, _ in got[UNREADABLE:])
