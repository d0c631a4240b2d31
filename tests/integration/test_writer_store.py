"""The write path against a real nats-server: stream setup, idempotency, atomic batches."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StorageType

from common import bus
from common.errors import Conflict, Invalid, StaleVersion, Unavailable, Undecidable
from common.messages import CommandResult
from common.settings import NatsSettings
from common.subjects import Subjects
from tests.support.commands import command
from tests.support.feeds import make, publish
from writer.eventstore import AggregateKey, WrongExpectedSequence
from writer.handler import CommandHandler, message_ids
from writer.store import JetStreamEventStore


def writer(nc: Client, settings: NatsSettings, timeout: float = 5.0) -> CommandHandler:
    store = JetStreamEventStore(nc, settings.stream, Subjects(settings.prefix), timeout)
    return CommandHandler(store, max_retries=8, cache_size=100)


async def stored(nc: Client, settings: NatsSettings) -> int:
    return int((await nc.jetstream().stream_info(settings.stream)).state.messages)


def answer(result: CommandResult) -> bytes:
    """What a client sees of a result, apart from whether this very call appended it."""
    return msgspec.json.encode(msgspec.structs.replace(result, duplicate=False))


async def test_ensure_stream_is_idempotent_and_creates_the_designed_config(
    nc: Client, nats_settings: NatsSettings
) -> None:
    await bus.ensure_stream(nc, nats_settings)
    await bus.ensure_stream(nc, nats_settings)
    config = (await nc.jetstream().stream_info(nats_settings.stream)).config
    assert config.storage == StorageType.FILE
    assert config.discard == DiscardPolicy.NEW
    assert (config.deny_delete, config.deny_purge, config.allow_atomic) == (True, True, True)
    assert config.allow_direct is True
    assert config.duplicate_window is not None and config.duplicate_window >= 120
    assert config.max_consumers == nats_settings.max_consumers
    assert config.num_replicas == nats_settings.replicas


async def test_ensure_stream_applies_a_changed_duplicate_window(
    nc: Client, nats_settings: NatsSettings
) -> None:
    changed = msgspec.structs.replace(nats_settings, duplicate_window_s=600.0, max_consumers=77)
    await bus.ensure_stream(nc, changed)
    config = (await nc.jetstream().stream_info(nats_settings.stream)).config
    assert (config.duplicate_window, config.max_consumers) == (600.0, 77)


async def test_ensure_stream_refuses_a_stream_it_cannot_change_with_a_clear_reason(
    nc: Client, nats_settings: NatsSettings
) -> None:
    other = msgspec.structs.replace(
        nats_settings, stream=f"{nats_settings.stream}_MEM", prefix=f"{nats_settings.prefix}m"
    )
    config = dataclasses.replace(bus.stream_config(other), storage=StorageType.MEMORY)
    await nc.jetstream().add_stream(config)
    with pytest.raises(Unavailable, match="cannot change") as caught:
        await bus.ensure_stream(nc, other)
    assert other.stream in caught.value.message
    assert (await nc.jetstream().stream_info(other.stream)).config.storage == StorageType.MEMORY


async def test_a_duplicate_window_under_two_minutes_is_refused_before_any_change(
    nc: Client, nats_settings: NatsSettings
) -> None:
    with pytest.raises(Invalid, match="at least 120"):
        await bus.ensure_stream(nc, msgspec.structs.replace(nats_settings, duplicate_window_s=60))
    config = (await nc.jetstream().stream_info(nats_settings.stream)).config
    assert config.duplicate_window == nats_settings.duplicate_window_s


async def test_the_same_command_id_three_times_appends_once_and_answers_the_same(
    nc: Client, nats_settings: NatsSettings
) -> None:
    handler = writer(nc, nats_settings)
    add = command("groceries", "add_todo", "cmd-1", todo_id="milk", text="Buy milk")
    results = [await handler.handle("todo_list", add) for _ in range(3)]
    assert [r.duplicate for r in results] == [False, True, True]
    assert len({answer(r) for r in results}) == 1
    assert await stored(nc, nats_settings) == 1


async def test_the_same_command_id_sent_concurrently_to_two_writers_appends_once(
    nc: Client, nats_settings: NatsSettings
) -> None:
    first, second = writer(nc, nats_settings), writer(nc, nats_settings)
    await first.handle("todo_list", command("l", "add_todo", "c0", todo_id="a", text="A"))
    await second.handle("todo_list", command("l", "add_todo", "c1", todo_id="b", text="B"))
    # Both writers now hold the list in their cache, `first` one event behind.
    add = command("l", "add_todo", "same", todo_id="c", text="C")
    results = await asyncio.gather(
        first.handle("todo_list", add),
        second.handle("todo_list", add),
        first.handle("todo_list", add),
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({answer(r) for r in results}) == 1
    assert await stored(nc, nats_settings) == 3


async def test_a_writer_with_a_stale_cache_checks_the_stream_before_refusing(
    nc: Client, nats_settings: NatsSettings
) -> None:
    first, second = writer(nc, nats_settings), writer(nc, nats_settings)
    await second.handle("todo_list", command("l", "clear_completed", "warm"))
    await first.handle("todo_list", command("l", "add_todo", "c1", todo_id="a", text="A"))
    completed = await second.handle("todo_list", command("l", "complete_todo", "c2", todo_id="a"))
    assert [e.event_type for e in completed.events] == ["todo_completed"]
    again = await first.handle("todo_list", command("l", "complete_todo", "c3", todo_id="a"))
    assert (again.events, again.sequence) == ([], completed.sequence)  # a no-op, checked


async def test_a_stale_if_match_is_refused_and_a_current_one_is_accepted(
    nc: Client, nats_settings: NatsSettings
) -> None:
    first, second = writer(nc, nats_settings), writer(nc, nats_settings)
    added = await first.handle("todo_list", command("l", "add_todo", "c1", todo_id="a", text="A"))
    await second.handle("todo_list", command("l", "complete_todo", "c2", todo_id="a"))
    stale = msgspec.structs.replace(
        command("l", "reopen_todo", "c3", todo_id="a"), expected_sequence=added.sequence
    )
    with pytest.raises(StaleVersion) as caught:
        await first.handle("todo_list", stale)
    current = caught.value.detail["sequence"]
    assert current > added.sequence
    fresh = msgspec.structs.replace(stale, expected_sequence=current)
    assert (await first.handle("todo_list", fresh)).events[0].event_type == "todo_reopened"


async def test_a_multi_event_batch_with_a_stale_expected_sequence_stores_nothing(
    nc: Client, nats_settings: NatsSettings
) -> None:
    handler = writer(nc, nats_settings)
    for n in range(3):
        await handler.handle(
            "todo_list", command("l", "add_todo", f"a{n}", todo_id=f"t{n}", text="x")
        )
        await handler.handle("todo_list", command("l", "complete_todo", f"c{n}", todo_id=f"t{n}"))
    before = await stored(nc, nats_settings)
    cleared = await handler.handle("todo_list", command("l", "clear_completed", "clear"))
    envelopes = [msgspec.structs.replace(e, event_id=f"{e.event_id}x") for e in cleared.events]
    ids = [f"other:{n}" for n in range(len(envelopes))]
    with pytest.raises(WrongExpectedSequence):
        await handler.store.append(envelopes, ids, expected=cleared.sequence - 1)
    assert len(cleared.events) == 3
    assert (
        await stored(nc, nats_settings) == before + 3
    )  # the clear, and nothing of the stale batch
    read = await handler.store.read(AggregateKey("todo_list", "l"), after=0)
    first = read[0].sequence
    assert [s.sequence for s in read] == list(range(first, first + before + 3))


async def test_a_repeated_message_id_is_reported_as_a_duplicate_of_its_sequence(
    nc: Client, nats_settings: NatsSettings
) -> None:
    """What a replicated stream answers to a retried publish; the writer then catches up."""
    handler = writer(nc, nats_settings)
    added = await handler.handle("todo_list", command("l", "add_todo", "c1", todo_id="a", text="A"))
    with pytest.raises(WrongExpectedSequence) as caught:
        ids = message_ids(AggregateKey("todo_list", "l"), 0, "c1", 1)  # what the first append sent
        await handler.store.append(added.events, ids, expected=added.sequence)
    assert caught.value.duplicate_of == added.sequence
    assert await stored(nc, nats_settings) == 1


async def test_a_writer_that_keeps_losing_the_race_answers_409_with_the_current_sequence(
    nc: Client, nats_settings: NatsSettings
) -> None:
    store = JetStreamEventStore(nc, nats_settings.stream, Subjects(nats_settings.prefix), 5.0)
    conflicts: list[int] = []
    loser = CommandHandler(
        store, max_retries=0, cache_size=10, on_conflict=lambda: conflicts.append(1)
    )
    winner = writer(nc, nats_settings)
    await loser.handle("todo_list", command("l", "add_todo", "c1", todo_id="a", text="A"))
    moved = await winner.handle("todo_list", command("l", "add_todo", "c2", todo_id="b", text="B"))
    with pytest.raises(Conflict) as caught:
        await loser.handle("todo_list", command("l", "add_todo", "c3", todo_id="c", text="C"))
    assert caught.value.detail["sequence"] == moved.sequence
    assert "resend the command" in caught.value.message
    assert conflicts == [1]
    assert await stored(nc, nats_settings) == 2


async def test_a_command_id_that_cannot_be_a_message_id_is_invalid(
    nc: Client, nats_settings: NatsSettings
) -> None:
    with pytest.raises(Invalid) as caught:
        await writer(nc, nats_settings).handle(
            "todo_list", command("l", "add_todo", "a\r\nb", todo_id="a", text="A")
        )
    assert caught.value.detail["field"] == "command_id"
    assert await stored(nc, nats_settings) == 0


@pytest.mark.parametrize(
    ("version", "payload"),
    [
        (2, {"todo_id": "a", "text": "again"}),  # a todo added twice
        (1, {"todo_id": "b", "text": "B"}),  # a version repeated
        (7, {"todo_id": "b", "text": "B"}),  # a version skipped
        (2**63 - 1, {"todo_id": "b", "text": "B"}),  # a version no reader can hold
    ],
    ids=["added twice", "version repeated", "version skipped", "version 2**63-1"],
)
async def test_history_the_writer_could_not_have_written_is_undecidable_at_its_sequence(
    nc: Client, nats_settings: NatsSettings, version: int, payload: dict[str, str]
) -> None:
    handler = writer(nc, nats_settings)
    await handler.handle("todo_list", command("l", "add_todo", "c1", todo_id="a", text="A"))
    body = make("todo_list", "l", 1, "todo_added", payload)
    envelope = {**msgspec.json.decode(body), "version": version}
    (sequence,) = await publish(nc, nats_settings, [("todo_list.l", msgspec.json.encode(envelope))])
    for fresh in (handler, writer(nc, nats_settings)):  # a warm cache and a cold one
        for _ in range(2):  # the same answer every time
            with pytest.raises(Undecidable) as caught:
                await fresh.handle(
                    "todo_list", command("l", "add_todo", "c2", todo_id="z", text="Z")
                )
            assert caught.value.detail["sequence"] == sequence
    assert await stored(nc, nats_settings) == 2  # nothing appended after it
