"""The event store's contract (writer/eventstore.py), held by both stores: the JetStream
one on a real nats-server and the in-memory twin the writer's unit tests run on.

Each test runs once per store; a behaviour of JetStream the in-memory store does not copy
fails its "memory" case here.
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from common.envelope import Envelope, Metadata, new_envelope
from common.errors import CommandIdReused
from common.settings import NatsSettings
from common.subjects import Subjects
from tests.support.commands import command
from writer.eventstore import AggregateKey, EventStore, WrongExpectedSequence
from writer.handler import CommandHandler
from writer.memory import InMemoryEventStore
from writer.store import JetStreamEventStore


@pytest.fixture(params=["memory", "jetstream"])
def store(request: pytest.FixtureRequest) -> EventStore:
    """Each store, empty: the in-memory one, and the JetStream one on a fresh stream."""
    if request.param == "memory":
        return InMemoryEventStore()
    nc = request.getfixturevalue("nc")  # a stream of this test's own
    settings: NatsSettings = request.getfixturevalue("nats_settings")
    return JetStreamEventStore(nc, settings.stream, Subjects(settings.prefix), 5.0)


def key(name: str = "l") -> AggregateKey:
    return AggregateKey("todo_list", name)


def events(on: AggregateKey, first_version: int, count: int) -> list[Envelope]:
    """`count` todo_added envelopes of `on`, versions from `first_version`."""
    metadata = Metadata(command_id=uuid.uuid4().hex, correlation_id="contract")
    return [
        new_envelope(
            on.aggregate_type,
            on.aggregate_id,
            first_version + n,
            "todo_added",
            {"todo_id": f"t{first_version + n}", "text": "x"},
            schema=2,
            metadata=metadata,
        )
        for n in range(count)
    ]


def ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


async def test_an_append_returns_its_last_sequence_and_reads_give_each_aggregate_in_order(
    store: EventStore,
) -> None:
    a, b = key("a"), key("b")
    first = await store.append(events(a, 1, 1), ids(1), expected=0)
    other = await store.append(events(b, 1, 2), ids(2), expected=0)
    last = await store.append(events(a, 2, 2), ids(2), expected=first)
    assert first < other < last
    read = await store.read(a, after=0)
    assert [s.event.version for s in read] == [1, 2, 3]
    assert [s.sequence for s in read] == [first, last - 1, last]
    assert [s.sequence for s in await store.read(a, after=first)] == [last - 1, last]
    assert [s.event.aggregate_id for s in await store.read(b, after=0)] == ["b", "b"]
    assert await store.read(key("never"), after=0) == []


@pytest.mark.parametrize("stale", [-1, +1], ids=["behind", "ahead"])
async def test_an_append_whose_expected_sequence_is_not_the_last_stores_nothing(
    store: EventStore, stale: int
) -> None:
    last = await store.append(events(key(), 1, 1), ids(1), expected=0)
    for count in (1, 3):  # one event, and an atomic batch
        with pytest.raises(WrongExpectedSequence) as caught:
            await store.append(events(key(), 2, count), ids(count), expected=last + stale)
        assert caught.value.duplicate_of is None
    with pytest.raises(WrongExpectedSequence):
        await store.append(events(key(), 1, 1), ids(1), expected=0)  # "new", but it is not
    assert [s.sequence for s in await store.read(key(), after=0)] == [last]


async def test_a_batch_is_stored_whole_with_consecutive_sequences(store: EventStore) -> None:
    last = await store.append(events(key(), 1, 5), ids(5), expected=0)
    assert [s.sequence for s in await store.read(key(), after=0)] == list(range(last - 4, last + 1))


async def test_a_resent_single_append_is_a_duplicate_of_its_first_sequence(
    store: EventStore,
) -> None:
    sent, msg_ids = events(key(), 1, 1), ids(1)
    first = await store.append(sent, msg_ids, expected=0)
    with pytest.raises(WrongExpectedSequence) as caught:
        await store.append(sent, msg_ids, expected=first)
    assert caught.value.duplicate_of == first
    assert len(await store.read(key(), after=0)) == 1


async def test_a_message_id_is_recognised_on_any_aggregate(store: EventStore) -> None:
    msg_ids = ids(1)
    first = await store.append(events(key("a"), 1, 1), msg_ids, expected=0)
    with pytest.raises(WrongExpectedSequence) as caught:
        await store.append(events(key("b"), 1, 1), msg_ids, expected=0)
    assert caught.value.duplicate_of == first
    assert await store.read(key("b"), after=0) == []


async def test_a_resent_batch_is_refused_and_stores_nothing_more(store: EventStore) -> None:
    sent, msg_ids = events(key(), 1, 3), ids(3)
    last = await store.append(sent, msg_ids, expected=0)
    with pytest.raises(WrongExpectedSequence):
        await store.append(sent, msg_ids, expected=last)
    assert len(await store.read(key(), after=0)) == 3


async def test_the_same_command_id_gives_the_same_result_and_another_command_is_refused(
    store: EventStore,
) -> None:
    handler = CommandHandler(store, max_retries=8, cache_size=100)
    add = command("l", "add_todo", "c1", todo_id="a", text="A")
    first = await handler.handle("todo_list", add)
    cold = CommandHandler(store, max_retries=8, cache_size=100)  # knows only the store
    for again in (handler, cold):
        repeated = await again.handle("todo_list", add)
        assert repeated.duplicate
        assert msgspec.structs.replace(repeated, duplicate=False) == first
        with pytest.raises(CommandIdReused):
            await again.handle("todo_list", command("l", "add_todo", "c1", todo_id="b", text="B"))
    assert len(await store.read(key(), after=0)) == 1


async def test_a_command_of_several_events_is_appended_as_one_batch(store: EventStore) -> None:
    handler = CommandHandler(store, max_retries=8, cache_size=100)
    for n in range(3):
        await handler.handle(
            "todo_list", command("l", "add_todo", f"a{n}", todo_id=f"t{n}", text="x")
        )
        await handler.handle("todo_list", command("l", "complete_todo", f"c{n}", todo_id=f"t{n}"))
    cleared = await handler.handle("todo_list", command("l", "clear_completed", "clear"))
    stored = await store.read(key(), after=0)
    assert [e.event_type for e in cleared.events] == ["todo_deleted"] * 3
    assert [s.event for s in stored[-3:]] == cleared.events
    assert [s.sequence for s in stored[-3:]] == list(
        range(cleared.sequence - 2, cleared.sequence + 1)
    )
