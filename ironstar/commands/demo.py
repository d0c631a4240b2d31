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
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, target
from ironstar.rerun import typed

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

Command = tuple[str, str, str, dict[str, Any]]


def add(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="send a realistic stream of commands so the dashboard moves",
        description="Feed a running Ironstar (e.g. `ironstar up`) with todo and profile "
        "commands over its HTTP API until Ctrl-C.",
        **examples("ironstar demo", "ironstar demo --rate 10 --duration 60"),
    )
    demo.add_argument(
        "--url",
        default=None,
        help="gateway base URL (default: the running stack's, see --data-dir)",
    )
    add_data_dir(demo)
    demo.add_argument("--rate", type=float, default=4.0, help="commands per second (default: 4)")
    demo.add_argument(
        "--duration", type=float, default=0, help="seconds (default: 0, runs until Ctrl-C)"
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="random seed, for a repeatable run (default: none)"
    )
    demo.set_defaults(run=run)


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


class NotIronstar(Exception):
    """The URL answered, but not as an Ironstar gateway does."""


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
            return reply.status, _json(url, reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(url, exc.code, exc.headers, exc.read() or b"{}")


def _json(url: str, status: int, headers: Any, body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        kind = headers.get("Content-Type", "no content type")
        raise NotIronstar(
            f"{url} answered HTTP {status} ({kind}), not Ironstar's JSON: "
            f"{body[:80].decode(errors='replace')!r}; is it an Ironstar gateway? "
            f"(`{typed(['status', '--url', url])}`)"
        )
    return answer


def _get(url: str) -> dict[str, Any] | None:
    """A read model's answer, or None when it holds nothing there (404)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return _json(url, reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        return _json(url, exc.code, exc.headers, exc.read() or b"{}")


def _current(url: str) -> tuple[Lists, list[str]]:
    """The demo's lists and people as the stack holds them now."""
    lists: Lists = {}
    for list_id in LISTS:
        found = _get(f"{url}/api/todo-lists/{list_id}") or {}
        items = (found.get("result") or {}).get("items") or []
        lists[list_id] = {i["todo_id"]: (i["text"], bool(i["completed"])) for i in items}
    registered = [p[0] for p in PEOPLE if _get(f"{url}/api/users/{p[0]}") is not None]
    return lists, registered


WRONG_TARGET = (401, 403, 404)  # a command answered so can never succeed: stop at once


@dataclass
class Tally:
    """What a demo run sent: `problem` says why it stopped early (None: it ran its course)."""

    accepted: int = 0
    rejected: int = 0
    problem: str | None = None

    def summary(self) -> str:
        return f"ironstar demo: {self.accepted} commands accepted, {self.rejected} rejected"


def base_url(url: str) -> str:
    """`url` without its path, query and fragment: `http://h:1/api/x?y` gives `http://h:1`."""
    return urllib.parse.urlsplit(url)._replace(path="", query="", fragment="").geturl()


def unusable(url: str) -> str | None:
    """Why `url` (--url) cannot be a gateway's base URL, with the one meant; None when fine."""
    if url.lower().startswith(("http://", "https://")):
        return None
    meant = f"http://{url.split('://', 1)[-1]}"
    return f"--url {url} is not an http:// or https:// URL; did you mean --url {meant}?"


def _wrong_target(url: str, status: int, body: dict[str, Any]) -> str:
    why = body.get("message") or status
    if status == 404:
        base = base_url(url)
        advice = f"; did you mean --url {base}?" if base != url else ""
        return (
            f"{url} has no Ironstar command API ({url}/api/commands/... answered 404 {why}); "
            f"give the gateway's base URL, without /api{advice}"
        )
    return (
        f"{url} refused a command ({status} {why}): it requires a token and the demo sends "
        "none; run the demo against a gateway without authentication (loopback)"
    )


def feed(
    url: str,
    rate: float,
    duration: float,
    seed: int | None,
    quiet: bool = False,
    tally: Tally | None = None,
) -> Tally:
    """Send commands at `rate` per second, counting them in `tally`, until `duration` seconds
    (0: for ever) or the first sign the target cannot take them."""
    rng = random.Random(seed)
    url = url.rstrip("/")
    started = time.monotonic()
    tally = Tally() if tally is None else tally
    try:
        lists, registered = _current(url)
        for i, command in enumerate(script(rng, lists, registered)):
            if duration and time.monotonic() - started >= duration:
                break
            status, body = send(url, command)
            if status in WRONG_TARGET:  # the target's fault, not a command rejected
                tally.problem = _wrong_target(url, status, body)
                break
            if status == 200:
                tally.accepted += 1
            else:
                tally.rejected += 1
            if not quiet and (i < 3 or status != 200 or i % 25 == 0):
                shown = f"#{body.get('sequence')}" if status == 200 else body.get("message", status)
                line = f"ironstar demo: {command[2]:<16} {command[0]}:{command[1]:<10} {shown}"
                print(line, flush=True)
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    except NotIronstar as exc:
        tally.problem = str(exc)
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        tally.problem = f"cannot reach {url}: {getattr(exc, 'reason', exc)}"
    return tally


def run(args: argparse.Namespace) -> int:
    """0 when commands were accepted; 1 when the target could not be reached or took none."""
    url = args.url if args.url and args.data_dir is None else target(args).gateway()
    if why := unusable(url):
        print(f"ironstar demo: {why}")
        return 1
    print(f"ironstar demo: {args.rate:g} commands/s to {url} (Ctrl-C stops)", flush=True)
    tally = Tally()
    try:
        feed(url, args.rate, args.duration, args.seed, tally=tally)
    except KeyboardInterrupt:
        print(f"\n{tally.summary()} (stopped)")
        return 0 if tally.accepted else 1
    if tally.problem:
        print(f"ironstar demo: {tally.problem}")
    print(tally.summary())
    if tally.problem is None and tally.rejected and not tally.accepted:
        print(
            f"ironstar demo: every command was rejected; `{typed(['status'])}` says whether the "
            "writer runs"
        )
    return 0 if tally.accepted and tally.problem is None else 1
