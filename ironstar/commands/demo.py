"""`ironstar demo`: a realistic stream of commands, so a new user sees the dashboard move.

The commands come from the loaded app's demo script (`App.demo`; the example's: people
keeping todo lists and their profiles), which may read the read models first to go on
from what the stack holds. They go to the gateway's HTTP API like any client's; the
occasional rejection (a rule broken) is part of real traffic and is counted, not fatal.
Stops after `--duration` seconds or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from common import catalogue
from common.app import DemoCommand, Read
from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, target
from ironstar.rerun import typed

Command = DemoCommand


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    demo = commands.add_parser(
        "demo",
        help="send a realistic stream of commands so the dashboard moves",
        description="Feed a running Ironstar (e.g. `ironstar up`) with the app's demo "
        "commands (IRONSTAR_APP) over its HTTP API until Ctrl-C.",
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


class NotIronstar(Exception):
    """The URL answered, but not as an Ironstar gateway does."""


def send(url: str, command: Command) -> tuple[int, dict[str, Any]]:
    """POST one demo command `(aggregate type, id, command type, payload)` to the gateway at `url`:
    (HTTP status, its JSON answer). Raises NotIronstar when the answer is not Ironstar's JSON,
    URLError/OSError when `url` cannot be reached."""
    aggregate_type, aggregate_id, command_type, payload = command
    request = urllib.request.Request(
        f"{url}/api/commands/{aggregate_type}/{aggregate_id}",
        data=json.dumps({"type": command_type, "payload": payload}).encode(),
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
        content_type = headers.get("Content-Type", "no content type")
        raise NotIronstar(
            f"{url} answered HTTP {status} ({content_type}), not Ironstar's JSON: "
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


def _reader(url: str) -> Read:
    """Read a catalogue query over HTTP: its result, or None when it holds nothing (404)."""

    def read(projection: str, name: str, params: Mapping[str, Any]) -> Any:
        """The `result` of `GET /api/read/<projection>/<name>?<params>`: the query's answer as
        decoded JSON (its shape is the query's `result` type), or None on 404."""
        query = urllib.parse.urlencode(params)
        found = _get(f"{url}/api/read/{projection}/{name}?{query}")
        return None if found is None else found.get("result")

    return read


def script(rng: random.Random, url: str) -> Iterator[Command]:
    """The loaded app's demo script, lazily (so reading the stack fails where sending
    does); AppError when the app has none."""
    app = catalogue.current().app
    if app.demo is None:
        raise catalogue.AppError(f"app {app.name} declares no demo traffic (App(demo=...))")
    yield from app.demo(rng, _reader(url))


WRONG_TARGET = (401, 403, 404)  # a command answered so can never succeed: stop at once


@dataclass
class Tally:
    """What a demo run sent: `problem` says why it stopped early (None: it ran its course)."""

    accepted: int = 0
    rejected: int = 0
    problem: str | None = None

    def summary(self) -> str:
        """The closing line: commands accepted and rejected."""
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


def play(
    url: str,
    rate_per_s: float,
    duration_s: float,
    seed: int | None,
    quiet: bool = False,
    tally: Tally | None = None,
) -> Tally:
    """Play the app's demo script against the gateway at `url`: send its commands at
    `rate_per_s` commands a second, counting them in `tally`, until `duration_s` seconds
    pass (0: for ever) or the first sign the target cannot take them (`tally.problem`
    says which: a 401/403/404 answer, a non-Ironstar answer, an unreachable URL).
    Raises AppError when the app has no demo script, BrokenPipeError when stdout closed."""
    rng = random.Random(seed)
    url = url.rstrip("/")
    started = time.monotonic()
    tally = Tally() if tally is None else tally
    try:
        # the script may read the stack as it goes: the same failures apply
        for i, command in enumerate(script(rng, url)):
            if duration_s and time.monotonic() - started >= duration_s:
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
            time.sleep(max(0.0, started + (i + 1) / rate_per_s - time.monotonic()))
    except NotIronstar as exc:
        tally.problem = str(exc)
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        tally.problem = f"cannot reach {url}: {getattr(exc, 'reason', exc)}"
    return tally


def run(args: argparse.Namespace) -> int:
    """0 when commands were accepted; 1 when the target could not be reached or took none."""
    if args.url and args.data_dir is None:
        url = args.url
    else:  # the running stack's gateway, and the app it runs (its app.json)
        stack = target(args)
        url = stack.gateway()
        try:
            stack.load_app()
        except catalogue.AppError as exc:
            print(f"ironstar demo: {exc}")
            return 2
    if why := unusable(url):
        print(f"ironstar demo: {why}")
        return 1
    print(f"ironstar demo: {args.rate:g} commands/s to {url} (Ctrl-C stops)", flush=True)
    tally = Tally()
    try:
        play(url, args.rate, args.duration, args.seed, tally=tally)
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
