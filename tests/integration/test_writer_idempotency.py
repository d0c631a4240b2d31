"""Command ids are per aggregate and per command, whatever the duplicate window or the
cache; an aggregate whose history cannot be folded answers a non-retryable error naming
the event (issue 12, items 2 and 3). Real nats-server, the writer's handler in-process."""

from __future__ import annotations

import dataclasses

import pytest
from nats.aio.client import Client

from common.envelope import encode, new_envelope, uuid7
from common.errors import CommandIdReused, Undecidable
from common.messages import CommandResult
from common.settings import NatsSettings
from common.subjects import Subjects
from tests.support.commands import command
from tests.support.waiting import eventually
from writer.handler import CommandHandler
from writer.store import JetStreamEventStore


def writer(nc: Client, settings: NatsSettings) -> CommandHandler:
    """A writer with a cold cache (as after a restart)."""
    store = JetStreamEventStore(nc, settings.stream, Subjects(settings.prefix), 5.0)
    return CommandHandler(store, max_retries=8, cache_size=100)


async def stored(nc: Client, settings: NatsSettings) -> int:
    return int((await nc.jetstream().stream_info(settings.stream)).state.messages)


def add(list_id: str, command_id: str, todo_id: str = "a", text: str = "A") -> object:
    return command(list_id, "add_todo", command_id, todo_id=todo_id, text=text)


async def test_one_command_id_on_two_aggregates_is_two_commands_each_applied(
    nc: Client, nats_settings: NatsSettings
) -> None:
    handler = writer(nc, nats_settings)
    first = await handler.handle("todo_list", add("one", "shared"))
    second = await handler.handle("todo_list", add("two", "shared"))
    other_type = await handler.handle(
        "user_profile",
        command("two", "register_user", "shared", name="Ada", email="ada@example.com"),
    )
    assert not (first.duplicate or second.duplicate or other_type.duplicate)
    assert [r.version for r in (first, second, other_type)] == [1, 1, 1]
    assert await stored(nc, nats_settings) == 3


async def test_a_two_event_command_whose_id_was_used_elsewhere_is_applied_not_a_409(
    nc: Client, nats_settings: NatsSettings
) -> None:
    handler = writer(nc, nats_settings)
    for todo in ("a", "b"):
        await handler.handle("todo_list", add("l", f"add-{todo}", todo))
        await handler.handle(
            "todo_list", command("l", "complete_todo", f"done-{todo}", todo_id=todo)
        )
    await handler.handle("todo_list", add("elsewhere", "clear-1"))
    cleared = await handler.handle("todo_list", command("l", "clear_completed", "clear-1"))
    assert [e.event_type for e in cleared.events] == ["todo_deleted", "todo_deleted"]
    assert not cleared.duplicate


@pytest.mark.parametrize("cold", [False, True], ids=["warm cache", "cold cache"])
async def test_a_reused_id_with_another_command_is_409_naming_command_id_and_a_retry_is_a_duplicate(
    nc: Client, nats_settings: NatsSettings, cold: bool
) -> None:
    handler = writer(nc, nats_settings)
    first = await handler.handle("todo_list", add("l", "c1", "a", "A"))
    await handler.handle("todo_list", add("l", "c2", "b", "B"))  # the aggregate moved on
    if cold:
        handler = writer(nc, nats_settings)
    for other in (
        add("l", "c1", "a", "changed text"),
        add("l", "c1", "z", "A"),
        command("l", "rename_todo", "c1", todo_id="a", text="A"),
        command("l", "clear_completed", "c1"),  # a 0- or many-event command
    ):
        with pytest.raises(CommandIdReused) as caught:
            await handler.handle("todo_list", other)
        assert caught.value.detail == {"field": "command_id", "sequence": first.sequence}
    again = await handler.handle("todo_list", add("l", "c1", "a", "A"))
    assert again.duplicate and again.events == first.events and again.sequence == first.sequence
    assert await stored(nc, nats_settings) == 2


async def test_after_the_duplicate_window_the_answers_are_the_same_as_inside_it(
    nc: Client, nats_settings: NatsSettings
) -> None:
    """A stream with a 1 s window (below the writer's minimum, set here directly)."""
    js = nc.jetstream()
    config = (await js.stream_info(nats_settings.stream)).config
    await js.update_stream(dataclasses.replace(config, duplicate_window=1.0))
    handler = writer(nc, nats_settings)
    first = await handler.handle("todo_list", add("l", "w1"))
    await handler.handle("todo_list", add("m", "w1"))
    probe = f"{nats_settings.prefix}.events.probe.p"
    await js.publish(probe, b"{}", headers={"Nats-Msg-Id": "probe"})

    async def window_passed() -> bool:  # the probe's id is forgotten: so are the commands'
        ack = await js.publish(probe, b"{}", headers={"Nats-Msg-Id": "probe"})
        return not ack.duplicate

    await eventually(window_passed, bool, timeout=30, every=0.25)
    for one in (handler, writer(nc, nats_settings)):  # warm, then cold
        again = await one.handle("todo_list", add("l", "w1"))
        assert again.duplicate and again.sequence == first.sequence
        with pytest.raises(CommandIdReused):
            await one.handle("todo_list", add("l", "w1", "other"))
    fresh = await writer(nc, nats_settings).handle("todo_list", add("n", "w1"))
    assert not fresh.duplicate and fresh.version == 1


def _envelope(list_id: str, version: int, event_type: str, payload: dict, schema: int = 1) -> bytes:
    return encode(
        new_envelope(
            "todo_list",
            list_id,
            version,
            event_type,
            payload,
            schema=schema,
            occurred_at="2026-01-01T00:00:00Z",
        )
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not an envelope",
        b'{"event_type": "todo_added"}',
        _envelope("other", 2, "todo_added", {"todo_id": "b", "text": "B"}, 2),  # wrong subject
        _envelope("l", 2, "todo_archived", {"todo_id": "a"}),  # a type from a newer writer
        _envelope("l", 2, "todo_added", {"todo_id": "b", "text": "B"}, schema=9),  # newer schema
        _envelope("l", 2, "todo_added", {"todo_id": "b"}, schema=2),  # a field missing
        _envelope("l", 2, "todo\nadded", {}),
        _envelope("l", 2, "todo_completed", {"todo_id": "ghost"}),  # a todo never added
    ],
    ids=[
        "garbage",
        "partial",
        "other-aggregate",
        "unknown-type",
        "newer-schema",
        "bad-payload",
        "line-break-type",
        "cannot-fold",
    ],
)
async def test_an_aggregate_with_an_unreadable_event_answers_undecidable_naming_its_sequence(
    nc: Client, nats_settings: NatsSettings, body: bytes
) -> None:
    handler = writer(nc, nats_settings)
    await handler.handle("todo_list", add("l", "c1"))
    ack = await nc.jetstream().publish(f"{nats_settings.prefix}.events.todo_list.l", body)
    for attempt in (handler, handler, writer(nc, nats_settings)):  # cached, again, cold
        with pytest.raises(Undecidable) as caught:
            await attempt.handle("todo_list", add("l", f"c{uuid7()}", "x"))
        assert caught.value.detail["sequence"] == ack.seq
        assert f"sequence {ack.seq}" in caught.value.message
    ok: CommandResult = await handler.handle("todo_list", add("fine", "c1"))
    assert ok.version == 1  # other aggregates are not affected
