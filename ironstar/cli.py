"""The `ironstar` command: the one place that knows every service.

Each subcommand lives in its own module under `ironstar/commands/`, exposing
`add(commands)` that registers its parser and sets `run(args) -> int` as its handler.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from common.catalogue import AppError
from common.errors import IronstarError
from ironstar.commands import (
    bench,
    cluster,
    config,
    demo,
    new,
    query,
    rebuild,
    services,
    snapshot,
    status,
    token,
    up,
)

COMMANDS = (
    up,
    services,
    status,
    demo,
    new,
    query,
    rebuild,
    snapshot,
    config,
    bench,
    cluster,
    token,
)

EXAMPLES = """examples:
  ironstar up                               everything on this machine, data in ./.ironstar
  ironstar up --http-port 8080 --data-dir /tmp/demo
  IRONSTAR_NATS_URL=nats://10.0.0.5:4222 ironstar writer
  ironstar up --demo                        the same, with demo traffic on the dashboard
  ironstar new billing && ironstar up --app billing   your own domain as an app package
  ironstar status                           health, stream size, consumers, projection lag
  ironstar cluster up --detach              3 NATS nodes + 2 of each service on loopback
  ironstar config                           every IRONSTAR_* variable and its default
  ironstar query "SELECT * FROM stream_counts"   read-only SQL over the read models
  ironstar token --scope 'read:*'           a bearer token signed with IRONSTAR_AUTH_SECRET
"""


def parser() -> argparse.ArgumentParser:
    """The `ironstar` argument parser: one subcommand per module of COMMANDS."""
    root = argparse.ArgumentParser(
        prog="ironstar",
        description="Event-sourced backend for live dashboards on NATS JetStream and DuckDB.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (default: sys.argv). Exit status: the command's; 1 for an
    IronstarError, 2 for an app that cannot run it (AppError), 141 when stdout closed early (as
    SIGPIPE would), the message on stderr."""
    args = parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except IronstarError as exc:
        print(f"ironstar {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except AppError as exc:  # the app cannot run this: one line, as a service refuses it
        print(f"ironstar {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ironstar demo | head -2`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 141  # as a shell reports a command ended by SIGPIPE
    return result
