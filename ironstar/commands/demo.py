"""`ironstar demo`: a realistic stream of commands, so a new user sees the dashboard move.

The commands come from the loaded app's demo script (`App.demo`; the example's: people
keeping todo lists and their profiles). They go to the gateway's HTTP API like any
client's; the occasional rejection (a rule broken) is part of real traffic and is counted,
not fatal. Stops after `--duration` seconds or on Ctrl-C.
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

from common import catalogue
from common.app import DemoCommand

Command = DemoCommand


def add(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="send a realistic stream of commands so the dashboard moves",
        description="Feed a running Ironstar (e.g. `ironstar up`) with the app's demo "
        "commands (IRONSTAR_APP) over its HTTP API until Ctrl-C.  "
        "Example: ironstar demo --rate 10 --duration 60",
    )
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL")
    demo.add_argument("--rate", type=float, default=4.0, help="commands per second (default 4)")
    demo.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.set_defaults(run=run)


def script(rng: random.Random) -> Iterator[Command]:
    """The loaded app's endless demo script; AppError when the app has none."""
    app = catalogue.current().app
    if app.demo is None:
        raise catalogue.AppError(f"app {app.name} declares no demo traffic (App(demo=...))")
    return app.demo(rng)


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
