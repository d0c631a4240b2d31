"""`ironstar cluster up|down`: the distributed topology as local processes on loopback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common.settings import GatewaySettings, check_all
from common.telemetry import configure_logging
from ironstar.commands import examples
from ironstar.rerun import typed


def add(commands: Any) -> None:
    """Register `ironstar cluster up|down` on the argparse subparsers `commands`."""
    cluster = commands.add_parser(
        "cluster",
        help="start or stop a local NATS cluster with replicas of every service",
        description="Run the distributed topology on this machine: a JetStream cluster "
        "(stream replicas 3, fsync before ack) and replicas of every service, on loopback.",
        **examples(
            "ironstar cluster up",
            "ironstar cluster up --detach",
            "ironstar cluster up --nats 3 --writers 2 --projectors 2 --gateways 2",
            "ironstar cluster down",
        ),
    )
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_up(actions)
    _add_down(actions)
    cluster.set_defaults(run=run)


def _add_up(actions: Any) -> None:
    up = actions.add_parser(
        "up",
        help="start the cluster (foreground unless --detach)",
        description="Start N nats-server nodes as one JetStream cluster (stream replicas "
        "min(N, 3), fsync before ack) and the services' replicas, each its own process, on "
        "loopback. In the foreground Ctrl-C stops everything; with --detach it keeps running "
        "until `ironstar cluster down`. One stack per data dir.",
        **examples("ironstar cluster up --detach", "ironstar cluster up --nats 1 --gateways 1"),
    )
    up.add_argument("--nats", type=int, default=3, help="nats-server nodes (default: 3)")
    up.add_argument("--writers", type=int, default=2, help="writer replicas (default: 2)")
    up.add_argument("--projectors", type=int, default=2, help="projector replicas (default: 2)")
    up.add_argument("--gateways", type=int, default=2, help="gateway replicas (default: 2)")
    up.add_argument(
        "--http-host", default=None, help="default: IRONSTAR_GATEWAY_HOST, else 127.0.0.1"
    )
    up.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="first gateway's port, the others follow (default: IRONSTAR_GATEWAY_PORT, "
        "else 8000; 0: free ports)",
    )
    _add_data_dir(up)
    up.add_argument(
        "--detach", action="store_true", help="leave it running; `ironstar cluster down` stops it"
    )


def _add_down(actions: Any) -> None:
    down = actions.add_parser(
        "down",
        help="stop a cluster started with --detach",
        description="Stop exactly the processes `ironstar cluster up --detach` recorded in "
        "<data dir>/cluster.json: gateways first, NATS last (SIGTERM, then SIGKILL after "
        "the grace period).",
        **examples("ironstar cluster down", "ironstar cluster down --data-dir /tmp/cluster"),
    )
    _add_data_dir(down)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".ironstar-cluster"),
        help="default: ./.ironstar-cluster",
    )


def run(args: argparse.Namespace) -> int:
    """`cluster down`: stop the recorded processes; `cluster up`: start the cluster,
    detached or in the foreground until Ctrl-C or a member exits. Exit status 0, or 1
    when it cannot start or stop (the reason on stderr)."""
    from ironstar.cluster import Cluster
    from ironstar.detached import down
    from ironstar.processes import StartError, foreground

    if args.action == "down":
        try:
            stopped = down(args.data_dir)
        except StartError as exc:
            print(f"ironstar: {exc}", file=sys.stderr)
            return 1
        print(f"ironstar: stopped {', '.join(stopped) or 'nothing (already gone)'}")
        return 0
    configure_logging("ironstar", "ERROR")  # its own `ironstar:` lines say what happens
    check_all()  # a value any service would refuse: an error naming it, before any start
    gateway = GatewaySettings.from_env()
    cluster = Cluster(
        args.data_dir,
        nats=args.nats,
        writers=args.writers,
        projectors=args.projectors,
        gateways=args.gateways,
        http_host=args.http_host or gateway.host,
        http_port=gateway.port if args.http_port is None else args.http_port,
        detach=args.detach,
    )
    if args.detach:
        try:
            cluster.start()
        except StartError as exc:
            cluster.stop()
            print(f"ironstar: {exc}", file=sys.stderr)
            return 1
        print(cluster.banner())
        stop = typed(["cluster", "down", "--data-dir", str(args.data_dir)])
        print(f"ironstar: detached; `{stop}` stops it")
        return 0

    def start() -> str:
        cluster.start()
        return cluster.banner() + "\nironstar: running (Ctrl-C stops everything)"

    def check() -> str | None:
        gone = cluster.exited()
        return f"{', '.join(gone)} exited" if gone else None

    return foreground(start, check, cluster.stop)
