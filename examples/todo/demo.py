"""Demo traffic: a few people keep a few todo lists and update their profiles.

`demo(rng, read)` is endless and plausible: todos added, completed, renamed, reopened and
deleted (a list never holds the same text twice), completed ones cleared now and then,
people joining one by one and sometimes changing their name to another real form of it.
It starts from what the stack holds (`read` asks the read models), so a demo run again
on the same data goes on from there.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from common.app import DemoCommand as Command
from common.app import Read

LISTS = ("inbox", "groceries", "work", "holiday")
THINGS = {
    "inbox": (
        "Call the plumber", "Renew passport", "Book dentist", "Back up the laptop",
        "Pay the electricity bill", "Reply to Sam", "Return the library books",
        "Fix the bike light", "Send the birthday card", "Cancel the gym trial",
    ),
    "groceries": (
        "Milk", "Sourdough", "Coffee beans", "Tomatoes", "Olive oil", "Lemons", "Eggs",
        "Basil", "Parmesan", "Rice", "Apples", "Greek yoghurt", "Dark chocolate", "Oat milk",
    ),
    "work": (
        "Review the PR", "Write the release notes", "Rotate the keys", "Plan the sprint",
        "Update the runbook", "Answer the security review", "Fix the flaky test",
        "Draft the Q3 roadmap", "Prepare the demo", "Book the offsite room",
    ),
    "holiday": (
        "Book the train", "Pack sunscreen", "Print tickets", "Water the plants",
        "Buy travel adapters", "Download offline maps", "Check the passport dates",
        "Book the ferry", "Find a cat sitter", "Pack the hiking boots",
    ),
}  # fmt: skip
DETAILS = ("today", "before Friday", "this weekend", "after lunch", "first thing Monday")
# (id, name, another name they might switch to): real people, real alternative spellings.
PEOPLE = (
    ("ada", "Ada Lovelace", "Augusta Ada King"),
    ("grace", "Grace Hopper", "Grace Brewster Hopper"),
    ("alan", "Alan Turing", "Alan M. Turing"),
    ("katherine", "Katherine Johnson", "Katherine G. Johnson"),
    ("edsger", "Edsger Dijkstra", "Edsger W. Dijkstra"),
    ("barbara", "Barbara Liskov", "Barbara H. Liskov"),
    ("margaret", "Margaret Hamilton", "Margaret H. Hamilton"),
    ("donald", "Donald Knuth", "Donald E. Knuth"),
    ("radia", "Radia Perlman", "Radia J. Perlman"),
    ("frances", "Frances Allen", "Frances E. Allen"),
)
FIRST_USERS = 3  # registered at once; the others join one by one as the demo runs


def _register(user: tuple[str, str, str]) -> Command:
    return (
        "user_profile",
        user[0],
        "register_user",
        {"name": user[1], "email": f"{user[0]}@example.org"},
    )


Lists = dict[str, dict[str, tuple[str, bool]]]  # list id → todo id → (text, completed)


def script(
    rng: random.Random, lists: Lists | None = None, registered: Iterable[str] = ()
) -> Iterator[Command]:
    """An endless, plausible sequence of (aggregate type, id, command, payload).

    A list never holds the same text twice; people join one by one and sometimes change
    their name to another real form of it. `lists` and `registered` are what a stack
    already holds (a demo run again on the same data goes on from there).
    """
    todos: Lists = {name: dict((lists or {}).get(name, {})) for name in LISTS}
    known = set(registered)
    joined = [p for p in PEOPLE if p[0] in known]
    for user in PEOPLE[:FIRST_USERS]:
        if user[0] not in known:
            joined.append(user)
            yield _register(user)
    run = f"{rng.randrange(16**4):04x}"  # todo ids of this run, apart from an earlier run's
    n = 0
    while True:
        n += 1
        list_id = rng.choice(LISTS)
        items = todos[list_id]
        used = {text.split(" (")[0] for text, _ in items.values()}
        fresh = [text for text in THINGS[list_id] if text not in used]
        roll = rng.random()
        if fresh and (roll < 0.4 or len(items) < 2):
            todo_id = f"{run}-{n}"
            text = rng.choice(fresh)
            items[todo_id] = (text, False)
            yield "todo_list", list_id, "add_todo", {"todo_id": todo_id, "text": text}
        elif roll < 0.65 and items:
            todo_id = rng.choice(list(items))
            text, done = items[todo_id]
            items[todo_id] = (text, not done)
            command = "reopen_todo" if done else "complete_todo"
            yield "todo_list", list_id, command, {"todo_id": todo_id}
        elif roll < 0.72 and items:
            todo_id = rng.choice(list(items))
            text, done = items[todo_id]
            text = f"{text.split(' (')[0]} ({rng.choice(DETAILS)})"
            items[todo_id] = (text, done)
            yield "todo_list", list_id, "rename_todo", {"todo_id": todo_id, "text": text}
        elif roll < 0.85 and items:
            todo_id = rng.choice(list(items))
            del items[todo_id]
            yield "todo_list", list_id, "delete_todo", {"todo_id": todo_id}
        elif roll < 0.9:
            todos[list_id] = {k: v for k, v in items.items() if not v[1]}
            yield "todo_list", list_id, "clear_completed", {}
        elif roll < 0.95 and len(joined) < len(PEOPLE):
            joined.append(next(p for p in PEOPLE if p not in joined))
            yield _register(joined[-1])
        else:
            user_id, name, other = rng.choice(joined)
            yield "user_profile", user_id, "update_profile", {"name": rng.choice((name, other))}


def demo(rng: random.Random, read: Read) -> Iterator[Command]:
    """The script, starting from the lists and people the read models hold now."""
    lists: Lists = {}
    for list_id in LISTS:
        items = (read("todo_lists", "get", {"list_id": list_id}) or {}).get("items") or []
        lists[list_id] = {i["todo_id"]: (i["text"], bool(i["completed"])) for i in items}
    registered = [p[0] for p in PEOPLE if read("user_profiles", "get", {"user_id": p[0]})]
    return script(rng, lists, registered)
