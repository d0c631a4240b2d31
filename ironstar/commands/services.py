"""`ironstar writer|projector|gateway`: one service alone, against any NATS URL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import catalogue, runtime
from common.settings import (
    AuthSettings,
    GatewaySettings,
    LimitSettings,
    NatsSettings,
    ProjectorSettings,
    WriterSettings,
    app_name,
)
from ironstar.commands import examples

SERVICES = {
    "writer": "validate commands and append events (queue group 'writers')",
    "projector": "apply the stream into a DuckDB file and answer queries",
    "gateway": "serve HTTP, SSE and the dashboard",
}


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    for service, text in SERVICES.items():
        one = commands.add_parser(
            service,
            help=text,
            description=f"Run the {service} alone against IRONSTAR_NATS_URL: {text}.",
            **examples(f"IRONSTAR_NATS_URL=nats://127.0.0.1:4222 ironstar {service}"),
        )
        one.add_argument("--ready-file", type=Path, help="written once the service serves")
        one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run one service (writer, projector or gateway) in the foreground on the app of IRONSTAR_APP.
    Exit status: the service's (`common.runtime.run`), or 2 when the app is refused."""
    try:
        cat = catalogue.install(catalogue.load(app_name()))
    except catalogue.AppError as exc:
        print(f"ironstar {args.command}: {exc}", file=sys.stderr)
        return 2
    print(f"ironstar {args.command}: app {cat.app.name} ({app_name()})", file=sys.stderr)
    nats = NatsSettings.from_env()
    match args.command:
        case "writer":
            from writer.main import serve as writer

            writer_settings = WriterSettings.from_env()
            return runtime.run(
                "writer", lambda r, s: writer(nats, writer_settings, r, s), args.ready_file
            )
        case "projector":
            from projector.main import serve as projector

            projector_settings = ProjectorSettings.from_env()
            return runtime.run(
                "projector", lambda r, s: projector(nats, projector_settings, r, s), args.ready_file
            )
        case _:
            from gateway.main import serve as gateway

            gateway_settings = GatewaySettings.from_env()
            auth, limits = AuthSettings.from_env(), LimitSettings.from_env()
            return runtime.run(
                "gateway",
                lambda r, s: gateway(nats, gateway_settings, r, s, auth, limits),
                args.ready_file,
            )
