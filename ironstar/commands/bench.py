"""`ironstar bench <name>`: a benchmark printed beside the ceiling measured in the same run.

Each benchmark is a module in `ironstar/benchmarks/` exposing `add(parser)` for its
options and `async def run(args) -> dict[str, Any]` returning every figure and ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
from typing import Any

from ironstar.commands import DefaultsHelp, examples

BENCHMARKS = {
    "append": "commands/s and latency of the write path beside raw JetStream publishes",
    "project": "catch-up of the projector over stored events beside NATS-only and DuckDB-only",
    "sse": "fan-out to many SSE clients beside an in-process broadcast",
    "auth": "per-request cost of token checks and limits beside HMAC and JSON decoding",
    "live": "live queries shared by many subscribers beside polling the same queries",
}


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    bench = commands.add_parser(
        "bench",
        help="run a benchmark and print it beside its ceiling",
        description="Benchmarks print a table, or one JSON object with --json.",
        **examples("ironstar bench append --json", "ironstar bench project --events 100000"),
    )
    names = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    for name, text in BENCHMARKS.items():
        one = names.add_parser(name, help=text, description=text, formatter_class=DefaultsHelp)
        one.add_argument("--json", action="store_true", help="print one JSON object")
        _module(name).add(one)
        one.set_defaults(run=run)


def _module(name: str) -> Any:
    return importlib.import_module(f"ironstar.benchmarks.{name}")


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its figures (a table, or one JSON object with --json);
    exit status 0."""
    figures: dict[str, Any] = asyncio.run(_module(args.bench).run(args))
    if args.json:
        print(json.dumps(figures))
    else:
        width = max(map(len, figures))
        for name, value in figures.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
            print(f"{name:<{width}}  {shown}")
    return 0
