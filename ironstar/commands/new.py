"""`ironstar new NAME`: scaffold the smallest working app in the current directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common.errors import Invalid
from ironstar.commands import examples
from ironstar.scaffold import write_app


def add(commands: Any) -> None:
    new = commands.add_parser(
        "new",
        help="write a new app package (one aggregate, a SQL projection, a query, a panel, tests)",
        description="Write package NAME in the current directory: the smallest working app. "
        "Then: pytest NAME && ironstar up --app NAME.",
        **examples("ironstar new billing", "ironstar new billing --dir apps"),
    )
    new.add_argument("name", help="the package (and aggregate) name, e.g. billing")
    new.add_argument("--dir", type=Path, default=Path("."), help="where (default: here)")
    new.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        written = write_app(args.dir, args.name)
    except Invalid as exc:
        print(f"ironstar new: {exc.message}", file=sys.stderr)
        return 2
    lines = sum(len(path.read_text().splitlines()) for path in written)
    for path in written:
        print(f"ironstar new: wrote {path}")
    print(f"ironstar new: {len(written)} files, {lines} lines; next: pytest {args.name} && "
          f"ironstar up --app {args.name}")  # fmt: skip
    return 0
