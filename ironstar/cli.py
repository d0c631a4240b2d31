"""The `ironstar` command: the one place that knows every service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common import runtime
from common.errors import IronstarError
from common.settings import (
    SECTIONS,
    GatewaySettings,
    NatsSettings,
    ProjectorSettings,
    WriterSettings,
)

EXAMPLES = """examples:
  ironstar up                               everything on this machine, data in ./.ironstar
  ironstar up --http-port 8080 --data-dir /tmp/demo
  IRONSTAR_NATS_URL=nats://10.0.0.5:4222 ironstar writer
  ironstar config                           every IRONSTAR_* variable and its default
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ironstar",
        description="Event-sourced backend for live dashboards on NATS JetStream and DuckDB.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    for service, text in (
        ("writer", "validate commands and append events (queue group 'writers')"),
        ("projector", "apply the stream into a DuckDB file and answer queries"),
        ("gateway", "serve HTTP, SSE and the dashboard"),
    ):
        one = commands.add_parser(
            service,
            help=text,
            description=f"Run the {service} alone against IRONSTAR_NATS_URL: {text}. "
            f"Example: IRONSTAR_NATS_URL=nats://127.0.0.1:4222 ironstar {service}",
        )
        one.add_argument("--ready-file", type=Path, help="written once the service serves")

    commands.add_parser(
        "config",
        help="list every IRONSTAR_* variable with its default",
        description="Print the configuration table.  Example: ironstar config",
    )
    from ironstar.bench import add_parser as add_bench

    add_bench(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except IronstarError as exc:
        print(f"ironstar {args.command}: {exc.message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "up":
            from ironstar.up import Stack, up

            return up(Stack(args.data_dir, args.http_host, args.http_port, args.nats_port))
        case "writer":
            from writer.main import serve as writer

            nats, writer_settings = NatsSettings.from_env(), WriterSettings.from_env()
            return runtime.run(
                "writer", lambda r, s: writer(nats, writer_settings, r, s), args.ready_file
            )
        case "projector":
            from projector.main import serve as projector

            nats, projector_settings = NatsSettings.from_env(), ProjectorSettings.from_env()
            return runtime.run(
                "projector",
                lambda r, s: projector(nats, projector_settings, r, s),
                args.ready_file,
            )
        case "gateway":
            from gateway.main import serve as gateway

            nats, gateway_settings = NatsSettings.from_env(), GatewaySettings.from_env()
            return runtime.run(
                "gateway", lambda r, s: gateway(nats, gateway_settings, r, s), args.ready_file
            )
        case "config":
            print("| variable | default | meaning |\n|---|---|---|")
            for section in SECTIONS:
                for _, variable, default, text in section.variables():
                    print(f"| `{variable}` | `{default}` | {text} |")
            return 0
        case "bench":
            from ironstar.bench import run as bench

            return bench(args)
    print(f"unknown command {args.command}", file=sys.stderr)
    return 2
