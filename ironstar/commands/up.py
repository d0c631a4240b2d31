"""`ironstar up`: the whole system on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import catalogue
from common.settings import APP_VARIABLE, GatewaySettings, app_name, check_all
from ironstar.commands import examples


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    up = commands.add_parser(
        "up",
        help="start nats-server, writer, projector and gateway locally",
        description="Start a local nats-server (JetStream, fsync before ack) and every service "
        "as its own process; Ctrl-C stops them all. One stack per data dir. The gateway's "
        "address defaults to IRONSTAR_GATEWAY_HOST / IRONSTAR_GATEWAY_PORT.",
        **examples(
            "ironstar up --http-port 8080",
            "ironstar up --demo",
            "ironstar up --app billing",
            "IRONSTAR_GATEWAY_PORT=8001 make run",
            "make run ARGS='--http-port 8001 --data-dir .ironstar-2'",
        ),
    )
    up.add_argument("--data-dir", type=Path, default=Path(".ironstar"), help="default: ./.ironstar")
    up.add_argument(
        "--http-host", default=None, help="default: IRONSTAR_GATEWAY_HOST, else 127.0.0.1"
    )
    up.add_argument(
        "--http-port", type=int, default=None, help="default: IRONSTAR_GATEWAY_PORT, else 8000"
    )
    up.add_argument("--nats-port", type=int, default=0, help="default: a free port")
    up.add_argument(
        "--demo",
        nargs="?",
        type=float,
        const=4.0,
        default=0.0,
        metavar="RATE",
        help="also feed demo commands (RATE per second, default 4); see `ironstar demo`",
    )
    up.add_argument(
        "--app",
        default=None,
        help="the app package every service loads (sets IRONSTAR_APP; default: "
        "$IRONSTAR_APP or examples.todo); a package in the current directory loads",
    )
    up.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Start the stack on the chosen app in the foreground (with `--demo` commands a second once
    ready) until Ctrl-C. Exit status: `ironstar.up.up`'s, or 2 when the app is refused or has no
    demo script."""
    from ironstar.commands.demo import play
    from ironstar.up import Stack, up

    name = args.app or app_name()
    try:  # refuse before starting anything, with the same line a service would print
        cat = catalogue.install(catalogue.load(name))
    except catalogue.AppError as exc:
        print(f"ironstar up: {exc}", file=sys.stderr)
        return 2
    if args.demo and cat.app.demo is None:
        print(f"ironstar up: app {cat.app.name} declares no demo traffic (App(demo=...)); "
              "run without --demo", file=sys.stderr)  # fmt: skip
        return 2
    check_all()  # a value any service would refuse: an error naming it, before any start
    gateway = GatewaySettings.from_env()
    host = args.http_host or gateway.host
    port = gateway.port if args.http_port is None else args.http_port
    stack = Stack(args.data_dir, host, port, args.nats_port)
    stack.extra_env[APP_VARIABLE] = name
    if not args.demo:
        return up(stack)
    print(f"ironstar: demo traffic at {args.demo:g} commands/s once everything is ready")
    return up(stack, lambda url: play(url, args.demo, 0, None, quiet=True))  # stops on a problem
