"""`ironstar demo`: a realistic stream of commands, so a new user sees the dashboard move.

A few people keep a few todo lists: they add, complete, rename, reopen and delete todos,
clear completed ones now and then, register and update their profiles. Commands go to the
gateway's HTTP API like any client's; the occasional rejection (a rule broken) is part of
real traffic and is counted, not fatal. Stops after `--duration` seconds or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

LISTS = ("inbox", "groceries", "work", "holiday")
THINGS = {
    "inbox": ("Call the plumber", "Renew passport", "Book dentist", "Back up the laptop"),
    "groceries": ("Milk", "Sourdough", "Coffee beans", "Tomatoes", "Olive oil", "Lemons"),
    "work": ("Review the PR", "Write the release notes", "Rotate the keys", "Plan the sprint"),
    "holiday": ("Book the train", "Pack sunscreen", "Print tickets", "Water the plants"),
}
PEOPLE = (("ada", "Ada Lovelace"), ("grace", "Grace Hopper"), ("alan", "Alan Turing"))

Command = tuple[str, str, str, dict[str, Any]]


def add(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="send a realistic stream of commands so the dashboard moves",
        description="Feed a running Ironstar (e.g. `ironstar up`) with todo and profile "
        "commands over its HTTP API until Ctrl-C.  "
        "Example: ironstar demo --rate 10 --duration 60",
    )
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    demo.add_argument("--rate", type=float, default=4.0, help="commands per second (default 4)")
    demo.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.set_defaults(run=run)


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


def send(url: str, command: Command) -> tuple[int, dict[str, Any]]:
    aggregate_type, aggregate_id, kind, payload = command
    request = urllib.request.Request(
        f"{url}/api/commands/{aggregate_type}/{aggregate_id}",
        data=json.dumps({"type": kind, "payload": payload}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def feed(url: str, rate: float, duration: float, seed: int | None, quiet: bool = False) -> int:
    """Send commands at `rate` per second; returns how many were accepted."""
    rng = random.Random(seed)
    url = url.rstrip("/")
    started = time.monotonic()
    accepted = rejected = 0
    for i, command in enumerate(script(rng)):
        if duration and time.monotonic() - started >= duration:
            break
        try:
            status, body = send(url, command)
        except (urllib.error.URLError, OSError) as exc:
            if not quiet:
                print(f"ironstar demo: cannot reach {url}: {getattr(exc, 'reason', exc)}")
            return accepted
        if status == 200:
            accepted += 1
        else:
            rejected += 1
        if not quiet and (i < 3 or status != 200 or i % 25 == 0):
            shown = f"#{body.get('sequence')}" if status == 200 else body.get("message", status)
            print(f"ironstar demo: {command[2]:<16} {command[0]}:{command[1]:<10} {shown}")
        time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    if not quiet:
        print(f"ironstar demo: {accepted} commands accepted, {rejected} rejected")
    return accepted


def run(args: argparse.Namespace) -> int:
    print(f"ironstar demo: {args.rate:g} commands/s to {args.url} (Ctrl-C stops)")
    try:
        feed(args.url, args.rate, args.duration, args.seed)
    except KeyboardInterrupt:
        print("\nironstar demo: stopped")
    return 0
