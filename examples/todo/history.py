"""Stored histories for benchmarks and tests: valid event sequences of the example domain."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from common import envelope as codec
from common.envelope import Envelope

_EPOCH_MS = 1_790_000_000_000  # events are spread over time, 5 ms apart


def domain_events(
    count: int, lists: int = 100, users: int = 100, seed: int = 1
) -> Iterator[Envelope]:
    """`count` envelopes of valid histories: todos added, renamed, completed, reopened,
    deleted (some several at once, as `clear_completed` does); users registered, updated,
    deactivated. Deterministic for a seed."""
    rnd = random.Random(seed)
    todos: dict[str, dict[str, list[Any]]] = {}  # list -> todo -> [completed, deleted]
    versions: dict[str, int] = {}
    people: dict[str, bool] = {}  # user -> active
    made = 0

    def envelope(
        kind: str, key: str, event_type: str, data: dict[str, Any], command: str
    ) -> Envelope:
        versions[key] = versions.get(key, 0) + 1
        return codec.new_envelope(
            kind,
            key,
            versions[key],
            event_type,
            data,
            schema=2 if event_type == "todo_added" else 1,
            occurred_at=time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime((_EPOCH_MS + made * 5) // 1000)
            )
            + f".{(made * 5) % 1000:03d}Z",
            event_id=codec.uuid7(_EPOCH_MS + made * 5),
            command_id=command,
        )

    while made < count:
        command = f"c{made}"
        if rnd.random() < 0.2:
            user = f"u{rnd.randrange(users)}"
            if user not in people:
                data = {"name": f"User {user}", "email": f"{user}@example.com"}
                yield envelope("user_profile", user, "user_registered", data, command)
                people[user] = True
            elif people[user] and rnd.random() < 0.9:
                data = (
                    {"name": f"Name {made}"} if rnd.random() < 0.5 else {"email": f"{made}@e.org"}
                )
                yield envelope("user_profile", user, "profile_updated", data, command)
            elif people[user]:
                yield envelope("user_profile", user, "user_deactivated", {}, command)
                people[user] = False
            else:
                continue
            made += 1
            continue
        name = f"l{rnd.randrange(lists)}"
        items = todos.setdefault(name, {})
        live = [t for t, (_, deleted) in items.items() if not deleted]
        roll = rnd.random()
        if not live or roll < 0.35:
            todo = f"t{len(items)}"
            items[todo] = [False, False]
            yield envelope(
                "todo_list", name, "todo_added", {"todo_id": todo, "text": f"do {made}"}, command
            )
        elif roll < 0.97:
            todo = rnd.choice(live)
            state = items[todo]
            if roll < 0.55:
                kind, data = "todo_renamed", {"todo_id": todo, "text": f"redo {made}"}
            elif roll < 0.9:
                kind, data = ("todo_reopened" if state[0] else "todo_completed"), {"todo_id": todo}
                state[0] = not state[0]
            else:
                kind, data = "todo_deleted", {"todo_id": todo}
                state[1] = True
            yield envelope("todo_list", name, kind, data, command)
        else:  # clear_completed: one todo_deleted per completed todo, one command
            done = [t for t in live if items[t][0]][: max(count - made, 1)]
            for todo in done:
                items[todo][1] = True
                yield envelope("todo_list", name, "todo_deleted", {"todo_id": todo}, command)
            made += len(done)
            continue
        made += 1


def events(count: int, seed: int) -> Iterator[Envelope]:
    """The benchmarks' history: one list per 200 events, one user per 50."""
    return domain_events(count, max(1, count // 200), max(1, count // 50), seed)
