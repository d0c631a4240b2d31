"""Writers with stale caches answer as one writer would (writer/handler.py): a cache is only
a guess that the store's expected sequence checks, so it never changes an answer."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import IronstarError
from common.messages import CommandResult
from tests.support.commands import command
from writer.eventstore import AggregateKey
from writer.handler import CommandHandler
from writer.memory import InMemoryEventStore

TODOS = st.sampled_from("abc")
STEPS = st.one_of(
    st.tuples(st.just("add_todo"), TODOS),
    st.tuples(st.just("rename_todo"), TODOS),
    st.tuples(st.sampled_from(["complete_todo", "reopen_todo", "delete_todo"]), TODOS),
    st.tuples(st.just("clear_completed"), st.none()),
)


def answer(outcome: CommandResult | IronstarError) -> object:
    """What a client learns: the refusal's kind, or the events' types and payloads."""
    if isinstance(outcome, IronstarError):
        return type(outcome).__name__
    return outcome.sequence, [(e.event_type, e.payload) for e in outcome.events]


async def run(steps: list[tuple[int, str, str | None]], writers: int) -> list[object]:
    """Each step's answer, the step sent to writer `index % writers` of one shared store."""
    store = InMemoryEventStore()
    handlers = [CommandHandler(store, max_retries=8, cache_size=10) for _ in range(writers)]
    answers: list[object] = []
    for n, (index, type_, todo) in enumerate(steps):
        payload = {} if todo is None else {"todo_id": todo}
        if type_ in ("add_todo", "rename_todo"):
            payload["text"] = f"text {n % 3}"
        request = command("l", type_, f"c{n}", **payload)
        try:
            outcome: CommandResult | IronstarError = await handlers[index % writers].handle(
                "todo_list", request
            )
        except IronstarError as exc:
            outcome = exc
        answers.append(answer(outcome))
    versions = [s.event.version for s in await store.read(AggregateKey("todo_list", "l"), 0)]
    assert versions == list(range(1, len(versions) + 1))
    return answers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), STEPS), max_size=25))
def test_three_writers_sharing_a_store_answer_every_command_as_one_writer_would(
    steps: list[tuple[int, tuple[str, str | None]]],
) -> None:
    flat = [(index, type_, todo) for index, (type_, todo) in steps]
    assert asyncio.run(run(flat, writers=3)) == asyncio.run(run(flat, writers=1))
