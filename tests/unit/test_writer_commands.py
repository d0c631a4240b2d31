"""The writer's decide/append flow (writer/handler.py) on the in-memory event store: given
history, when a command arrives, then the events appended or the refusal. No server: the
store's contract with JetStream is held by tests/integration/test_event_store_contract.py."""

from __future__ import annotations

import msgspec
import pytest

from common.catalogue import aggregate
from common.envelope import Envelope
from common.errors import Conflict, RuleViolation, StaleVersion, TooLarge, Undecidable
from common.messages import CommandRequest
from tests.support.commands import command
from tests.support.feeds import make
from writer.eventstore import AggregateKey
from writer.handler import CommandHandler, fingerprint
from writer.memory import InMemoryEventStore

LIST = AggregateKey("todo_list", "l")


def writer(store: InMemoryEventStore, **options: int) -> CommandHandler:
    return CommandHandler(store, **{"max_retries": 8, "cache_size": 100, **options})


def add(todo_id: str, command_id: str | None = None) -> CommandRequest:
    return command("l", "add_todo", command_id or f"add-{todo_id}", todo_id=todo_id, text="x")


async def test_a_command_appends_its_events_at_the_next_version_with_its_ids() -> None:
    store = InMemoryEventStore()
    handler = writer(store)
    await handler.handle("todo_list", add("a"))
    renamed = await handler.handle(
        "todo_list", command("l", "rename_todo", "r1", todo_id="a", text="Milk")
    )
    (event,) = renamed.events
    assert (event.event_type, event.version, event.payload) == (
        "todo_renamed",
        2,
        {"todo_id": "a", "text": "Milk"},
    )
    assert (event.metadata.command_id, event.metadata.correlation_id) == ("r1", "corr-r1")
    assert (renamed.sequence, renamed.version) == (2, 2)
    assert [s.event for s in await store.read(LIST, after=1)] == [event]


async def test_a_command_that_decides_nothing_appends_nothing_and_answers_where_it_stands() -> None:
    store = InMemoryEventStore()
    handler = writer(store)
    await handler.handle("todo_list", add("a"))
    done = await handler.handle("todo_list", command("l", "complete_todo", "c1", todo_id="a"))
    again = await handler.handle("todo_list", command("l", "complete_todo", "c2", todo_id="a"))
    assert (again.events, again.sequence, again.version) == ([], done.sequence, 2)
    assert len(await store.read(LIST, after=0)) == 2


async def test_a_broken_rule_is_refused_in_words_and_appends_nothing() -> None:
    store = InMemoryEventStore()
    with pytest.raises(RuleViolation, match="does not exist in this list"):
        await writer(store).handle("todo_list", command("l", "complete_todo", "c1", todo_id="a"))
    assert await store.read(LIST, after=0) == []


async def test_a_stale_if_match_is_refused_with_the_current_sequence() -> None:
    store = InMemoryEventStore()
    handler = writer(store)
    first = await handler.handle("todo_list", add("a"))
    second = await handler.handle("todo_list", add("b"))
    stale = msgspec.structs.replace(add("c"), expected_sequence=first.sequence)
    with pytest.raises(StaleVersion) as caught:
        await handler.handle("todo_list", stale)
    assert caught.value.detail["sequence"] == second.sequence
    current = msgspec.structs.replace(stale, expected_sequence=second.sequence)
    assert (await handler.handle("todo_list", current)).version == 3


async def test_a_stale_cache_catches_up_and_decides_again_counting_one_conflict() -> None:
    store = InMemoryEventStore()
    conflicts: list[int] = []
    behind = CommandHandler(store, 8, 100, on_conflict=lambda: conflicts.append(1))
    ahead = writer(store)
    await behind.handle("todo_list", add("a"))
    await ahead.handle("todo_list", add("b"))
    # `behind` decides on its cache, its append is refused, it catches up and decides again
    with pytest.raises(RuleViolation, match="already exists"):
        await behind.handle("todo_list", add("b", command_id="again"))
    added = await behind.handle("todo_list", add("c"))
    assert (added.version, conflicts) == (3, [1])


async def test_a_stale_cache_reads_the_store_before_refusing_or_answering_a_no_op() -> None:
    store = InMemoryEventStore()
    behind, ahead = writer(store), writer(store)
    await behind.handle("todo_list", add("a"))
    await ahead.handle("todo_list", command("l", "complete_todo", "c1", todo_id="a"))
    await ahead.handle("todo_list", add("b"))
    # on `behind`'s cache `a` is active (reopen: a no-op) and `b` unknown (rename: refused)
    reopened = await behind.handle("todo_list", command("l", "reopen_todo", "r1", todo_id="a"))
    renamed = await behind.handle(
        "todo_list", command("l", "rename_todo", "r2", todo_id="b", text="B")
    )
    assert [e.event_type for e in reopened.events + renamed.events] == [
        "todo_reopened",
        "todo_renamed",
    ]


async def test_a_writer_that_keeps_losing_the_race_answers_conflict_with_the_sequence() -> None:
    store = InMemoryEventStore()
    loser, winner = writer(store, max_retries=0), writer(store)
    await loser.handle("todo_list", add("a"))
    moved = await winner.handle("todo_list", add("b"))
    with pytest.raises(Conflict, match="resend the command") as caught:
        await loser.handle("todo_list", add("c"))
    assert caught.value.detail["sequence"] == moved.sequence
    assert len(await store.read(LIST, after=0)) == 2


async def test_more_events_than_a_command_may_append_is_too_large_and_appends_nothing() -> None:
    store = InMemoryEventStore()
    handler = writer(store, max_events=2)
    for todo in "abc":
        await handler.handle("todo_list", add(todo))
        await handler.handle("todo_list", command("l", "complete_todo", f"c-{todo}", todo_id=todo))
    with pytest.raises(TooLarge) as caught:
        await handler.handle("todo_list", command("l", "clear_completed", "clear"))
    assert caught.value.detail["limit"] == 2
    assert len(await store.read(LIST, after=0)) == 6


async def test_an_evicted_aggregate_is_caught_up_from_the_store() -> None:
    store = InMemoryEventStore()
    handler = writer(store, cache_size=1)
    await handler.handle("todo_list", add("a"))
    await handler.handle("todo_list", command("other", "add_todo", "o1", todo_id="a", text="x"))
    with pytest.raises(RuleViolation, match="already exists"):
        await handler.handle("todo_list", add("a", command_id="twice"))
    assert (await handler.handle("todo_list", add("b"))).version == 2


@pytest.mark.parametrize(
    ("version", "payload"),
    [(2, {"todo_id": "a", "text": "again"}), (1, {"todo_id": "b", "text": "B"}), (7, {})],
    ids=["added twice", "version repeated", "version skipped"],
)
async def test_history_the_writer_could_not_have_written_is_undecidable_at_its_sequence(
    version: int, payload: dict[str, str]
) -> None:
    store = InMemoryEventStore()
    warm = writer(store)
    await warm.handle("todo_list", add("a"))
    body = make("todo_list", "l", version, "todo_added", payload or {"todo_id": "b", "text": "B"})
    around = msgspec.json.decode(body, type=Envelope)
    sequence = await store.append([around], ["around"], expected=1)
    for handler in (warm, writer(store)):  # a warm cache and a cold one
        for _ in range(2):  # the same answer every time
            with pytest.raises(Undecidable) as caught:
                await handler.handle("todo_list", add("z"))
            assert caught.value.detail["sequence"] == sequence
    assert len(await store.read(LIST, after=0)) == 2


def test_a_fingerprint_tells_commands_and_actors_apart_but_not_field_order() -> None:
    todo_list = aggregate("todo_list")
    one = todo_list.command("add_todo", {"todo_id": "a", "text": "x"})
    reordered = todo_list.command("add_todo", {"text": "x", "todo_id": "a"})
    other = todo_list.command("add_todo", {"todo_id": "a", "text": "y"})
    assert fingerprint(one, None) == fingerprint(reordered, None)
    prints = {fingerprint(one, None), fingerprint(one, "ann"), fingerprint(other, None)}
    assert len(prints) == 3
