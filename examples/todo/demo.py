"""Demo traffic: a few people keep a few todo lists and update their profiles.

`script(rng)` is endless and plausible: todos added, completed, renamed, reopened and
deleted, completed ones cleared now and then, profiles registered and updated. The
occasional rule it breaks (a race with itself) is part of real traffic.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from common.app import DemoCommand as Command

LISTS = ("inbox", "groceries", "work", "holiday")
THINGS = {
    "inbox": ("Call the plumber", "Renew passport", "Book dentist", "Back up the laptop"),
    "groceries": ("Milk", "Sourdough", "Coffee beans", "Tomatoes", "Olive oil", "Lemons"),
    "work": ("Review the PR", "Write the release notes", "Rotate the keys", "Plan the sprint"),
    "holiday": ("Book the train", "Pack sunscreen", "Print tickets", "Water the plants"),
}
PEOPLE = (("ada", "Ada Lovelace"), ("grace", "Grace Hopper"), ("alan", "Alan Turing"))


def script(rng: random.Random) -> Iterator[Command]:
    """An endless, plausible sequence of (aggregate type, id, command, payload)."""
    todos: dict[str, dict[str, bool]] = {name: {} for name in LISTS}
    for user_id, name in PEOPLE:
        yield (
            "user_profile",
            user_id,
            "register_user",
            {"name": name, "email": f"{user_id}@example.org"},
        )
    n = 0
    while True:
        n += 1
        list_id = rng.choice(LISTS)
        items = todos[list_id]
        roll = rng.random()
        if roll < 0.4 or len(items) < 2:
            todo_id = f"t{n}"
            items[todo_id] = False
            yield (
                "todo_list",
                list_id,
                "add_todo",
                {"todo_id": todo_id, "text": rng.choice(THINGS[list_id])},
            )
        elif roll < 0.65:
            todo_id = rng.choice(list(items))
            items[todo_id] = not items[todo_id]
            command = "complete_todo" if items[todo_id] else "reopen_todo"
            yield "todo_list", list_id, command, {"todo_id": todo_id}
        elif roll < 0.75:
            todo_id = rng.choice(list(items))
            text = f"{rng.choice(THINGS[list_id])} ({rng.choice(('today', 'soon', 'maybe'))})"
            yield "todo_list", list_id, "rename_todo", {"todo_id": todo_id, "text": text}
        elif roll < 0.85:
            todo_id = rng.choice(list(items))
            del items[todo_id]
            yield "todo_list", list_id, "delete_todo", {"todo_id": todo_id}
        elif roll < 0.9:
            todos[list_id] = {k: v for k, v in items.items() if not v}
            yield "todo_list", list_id, "clear_completed", {}
        else:
            user_id, name = rng.choice(PEOPLE)
            yield (
                "user_profile",
                user_id,
                "update_profile",
                {"name": f"{name} {rng.randint(1, 99)}"},
            )
