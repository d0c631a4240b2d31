"""Properties of the pure core: folding is deterministic and accepted commands keep invariants.

Commands are drawn over a few ids and texts (some invalid), decided one after the other;
refused commands change nothing, accepted ones are folded in.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from common.app import Aggregate
from common.catalogue import aggregate
from common.errors import IronstarError

todo_list = aggregate("todo_list")
user_profile = aggregate("user_profile")

ids = st.sampled_from(["a", "b", "c", "a.b", ""])
texts = st.sampled_from(["milk", " milk ", "tea", "", "   ", "x" * 201])
todo_commands = st.one_of(
    st.tuples(
        st.sampled_from(["add_todo", "rename_todo"]),
        st.fixed_dictionaries({"todo_id": ids, "text": texts}),
    ),
    st.tuples(
        st.sampled_from(["complete_todo", "reopen_todo", "delete_todo"]),
        st.fixed_dictionaries({"todo_id": ids}),
    ),
    st.tuples(st.just("clear_completed"), st.just({})),
)
names = st.sampled_from(["Ada", " Grace ", "", "n" * 101])
emails = st.sampled_from(["ada@example.com", "grace@navy.mil", "nope", "a@b"])
user_commands = st.one_of(
    st.tuples(st.just("register_user"), st.fixed_dictionaries({"name": names, "email": emails})),
    st.tuples(
        st.just("update_profile"),
        st.fixed_dictionaries({}, optional={"name": names, "email": emails}),
    ),
    st.tuples(st.just("deactivate_user"), st.just({})),
)


def run(kind: Aggregate, commands: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """Decide every command in turn; return the accepted events and the states after each."""
    state, events, states = kind.initial, [], [kind.initial]
    for command_type, payload in commands:
        try:
            command = kind.command(command_type, payload)
            decided = kind.decide(state, command)
        except IronstarError:
            continue
        assert kind.decide(state, command) == decided  # decide is a function of its inputs
        for event in decided:
            changed = kind.evolve(state, event)
            assert changed != state  # every event has an effect; no-ops yield no events
            state = changed
        events.extend(decided)
        states.append(state)
    return events, states


def stored_round_trip(kind: Aggregate, events: list[Any]) -> list[Any]:
    """Events as they come back from the stream: payload, schema, upcast, decode."""
    out = []
    for event in events:
        event_type, payload = kind.to_payload(event)
        out.append(kind.from_payload(event_type, kind.schema(event_type), payload))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(todo_commands, max_size=40))
def test_todo_list_fold_is_deterministic_and_accepted_commands_keep_invariants(
    commands: list[tuple[str, dict[str, Any]]],
) -> None:
    events, states = run(todo_list, commands)
    final = states[-1]
    assert todo_list.fold(events) == final
    assert todo_list.fold(stored_round_trip(todo_list, events)) == final
    for todo in final.todos.values():
        assert 1 <= len(todo.text) <= 200 and todo.text == todo.text.strip()
    for before, after in itertools.pairwise(states):
        assert set(before.todos) <= set(after.todos)  # todos are never forgotten
        deleted = {tid for tid, todo in before.todos.items() if todo.deleted}
        assert all(after.todos[tid] == before.todos[tid] for tid in deleted)  # terminal


@settings(max_examples=300, deadline=None)
@given(st.lists(user_commands, max_size=30))
def test_user_profile_fold_is_deterministic_and_accepted_commands_keep_invariants(
    commands: list[tuple[str, dict[str, Any]]],
) -> None:
    events, states = run(user_profile, commands)
    final = states[-1]
    assert user_profile.fold(events) == final
    assert user_profile.fold(stored_round_trip(user_profile, events)) == final
    for before, after in itertools.pairwise(states):
        assert after.registered or not before.registered
        if before.registered and not before.active:
            assert after == before  # deactivated is terminal
        if after.registered:
            assert "@" in after.email and after.name == after.name.strip() and after.name
