"""`ironstar bench ...`: benchmarks that print their figures beside a ceiling measured in
the same run. Subcommands are added by the issues that own each path."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run a benchmark and print it beside its ceiling",
        description="Benchmarks print a table, or one JSON object with --json.  "
        "Example: ironstar bench append --json",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_subparsers(dest="bench", metavar="BENCHMARK")


def report(figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "bench", None) is None:
        print("name a benchmark; see: ironstar bench --help")
        return 2
    return 0
