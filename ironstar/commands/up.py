"""`ironstar up`: the whole system on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add(commands: Any) -> None:
    up = commands.add_parser(
        "up",
        help="start nats-server, writer, projector and gateway locally",
        description="Start a local nats-server (JetStream, fsync before ack) and every service "
        "as its own process; Ctrl-C stops them all.  Example: ironstar up --http-port 8080",
    )
    up.add_argument("--data-dir", type=Path, default=Path(".ironstar"), help="default: ./.ironstar")
    up.add_argument("--http-host", default="127.0.0.1", help="default: 127.0.0.1 (loopback)")
    up.add_argument("--http-port", type=int, default=8000, help="default: 8000")
    up.add_argument("--nats-port", type=int, default=0, help="default: a free port")
    up.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ironstar.up import Stack, up

    return up(Stack(args.data_dir, args.http_host, args.http_port, args.nats_port))
