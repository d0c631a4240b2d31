"""`ironstar new NAME`: scaffold the smallest working app in the current directory."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from common.errors import Invalid
from ironstar.commands import examples
from ironstar.scaffold import refusal, shadowed, write_app


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    new = commands.add_parser(
        "new",
        help="write a new app package (one aggregate, a SQL projection, a query, a panel, tests)",
        description="Write package NAME in the current directory (or --dir): the smallest "
        "working app. NAME is also its aggregate type: a lowercase identifier, no module's "
        "name already (e.g. json, duckdb, common). It prints the next steps.",
        **examples("ironstar new billing", "ironstar new billing --dir apps"),
    )
    new.add_argument("name", help="the package (and aggregate) name, e.g. billing")
    new.add_argument("--dir", type=Path, default=Path("."), help="where (default: here)")
    new.set_defaults(run=run)


def next_steps(where: Path, name: str) -> str:
    """The shell line that tests and runs package `name` just written under `where`."""
    go = "" if where.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(str(where))} && "
    return f"{go}pytest {name} && ironstar up --app {name}"


def run(args: argparse.Namespace) -> int:
    """Write the app package and print its files and next steps. Exit status 0, or 2 when the name
    is refused (not an identifier, or it shadows a module)."""
    try:
        if why := refusal(args.name) or shadowed(args.name):
            raise Invalid(why, field="name")
        written = write_app(args.dir, args.name)
    except Invalid as exc:
        print(f"ironstar new: {exc.message}", file=sys.stderr)
        return 2
    lines = sum(len(path.read_text().splitlines()) for path in written)
    for path in written:
        print(f"ironstar new: wrote {path}")
    print(f"ironstar new: {len(written)} files, {lines} lines; next: "
          f"{next_steps(args.dir, args.name)}")  # fmt: skip
    return 0
