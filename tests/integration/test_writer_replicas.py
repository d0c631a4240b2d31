"""Two writer processes in the queue group, many concurrent commands on one aggregate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client

from common import bus
from common.domain import aggregate
from common.errors import Conflict, RuleViolation
from common.messages import CommandRequest, CommandResult
from common.settings import NatsSettings
from common.subjects import Subjects
from tests.support.processes import Service
from writer.store import JetStreamEventStore

pytestmark = pytest.mark.e2e

_results = msgspec.json.Decoder(CommandResult)


@pytest.fixture
def writers(service_env: dict[str, str], tmp_path: Path) -> Iterator[list[Service]]:
    started = [Service("writer", service_env, tmp_path).start() for _ in range(2)]
    yield started
    for service in started:
        assert service.stop() == 0


async def send(nc: Client, settings: NatsSettings, request: CommandRequest) -> CommandResult:
    subject = Subjects(settings.prefix).command("todo_list")
    body = await bus.request(nc, subject, msgspec.json.encode(request), 10.0, "writer")
    return _results.decode(body)


def request(command_id: str, type: str, **payload: object) -> CommandRequest:
    return CommandRequest(
        aggregate_id="shared",
        type=type,
        payload=dict(payload),
        command_id=command_id,
        correlation_id=f"corr-{command_id}",
    )


async def test_two_writers_append_every_accepted_command_exactly_once_in_version_order(
    writers: list[Service], nc: Client, nats_settings: NatsSettings
) -> None:
    commands = [
        request(f"add-{n}", "add_todo", todo_id=f"t{n}", text=f"todo {n}") for n in range(150)
    ]
    commands += [request(f"done-{n}", "complete_todo", todo_id=f"t{n}") for n in range(50)]
    outcomes = await asyncio.gather(
        *(send(nc, nats_settings, c) for c in commands), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, CommandResult)]
    refused = [o for o in outcomes if not isinstance(o, CommandResult)]
    assert all(isinstance(o, RuleViolation | Conflict) for o in refused), refused[:3]
    assert len(accepted) >= 150  # every add has no rule to break; only completes may race

    store = JetStreamEventStore(nc, nats_settings.stream, Subjects(nats_settings.prefix), 5.0)
    stream = await store.read("todo_list", "shared", after=0)
    stored_ids = [envelope.event_id for _, envelope in stream]
    accepted_ids = [event.event_id for result in accepted for event in result.events]
    assert sorted(stored_ids) == sorted(accepted_ids)  # exactly once, nothing else
    assert len(set(stored_ids)) == len(stored_ids)
    assert [envelope.version for _, envelope in stream] == list(range(1, len(stream) + 1))
    for result in accepted:
        by_id = {envelope.event_id: seq for seq, envelope in stream}
        assert [by_id[e.event_id] for e in result.events][-1:] == [result.sequence]

    todo_list = aggregate("todo_list")
    folded = todo_list.fold(
        todo_list.from_payload(e.event_type, e.schema, e.payload) for _, e in stream
    )
    completed = {
        e.payload["todo_id"] for r in accepted for e in r.events if e.event_type == "todo_completed"
    }
    assert set(folded.todos) == {f"t{n}" for n in range(150)}
    assert {tid for tid, todo in folded.todos.items() if todo.completed} == completed


async def test_the_same_command_id_sent_three_times_concurrently_appends_once(
    writers: list[Service], nc: Client, nats_settings: NatsSettings
) -> None:
    await send(nc, nats_settings, request("warm", "add_todo", todo_id="w", text="warm"))
    add = request("once", "add_todo", todo_id="milk", text="Buy milk")
    results = await asyncio.gather(*(send(nc, nats_settings, add) for _ in range(3)))
    results.append(await send(nc, nats_settings, add))
    answers = {msgspec.json.encode(msgspec.structs.replace(r, duplicate=False)) for r in results}
    assert len(answers) == 1
    assert sum(not r.duplicate for r in results) == 1
    info = await nc.jetstream().stream_info(nats_settings.stream)
    assert info.state.messages == 2
