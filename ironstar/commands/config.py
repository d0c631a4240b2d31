"""`ironstar config`: every IRONSTAR_* variable, its default and meaning."""

from __future__ import annotations

import argparse
from typing import Any

from common.settings import APP_VARIABLE, DEFAULT_APP, SECTIONS
from ironstar.commands import examples


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    config = commands.add_parser(
        "config",
        help="list every IRONSTAR_* variable with its default",
        description="Print the configuration table (Markdown).",
        **examples("ironstar config"),
    )
    config.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each IRONSTAR_* variable, its default and meaning (a Markdown table); exit 0."""
    print("| variable | default | meaning |\n|---|---|---|")
    print(
        f"| `{APP_VARIABLE}` | `{DEFAULT_APP}` | the app package every service loads (an "
        "importable module; the current directory is on the import path; `up --app` sets it) |"
    )
    for section in SECTIONS:
        for _, variable, default, text in section.variables():
            print(f"| `{variable}` | `{default}` | {text} |")
    return 0
