"""`ironstar query "SQL"`: read-only SQL over the read models of a running projector.

Over NATS (`IRONSTAR_NATS_URL`): any projector replica answers, through the same sandbox
as `POST /api/sql`. With `--file` it opens a DuckDB file instead (e.g. a snapshot), read
only and locked down the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from common.errors import Invalid
from common.settings import ProjectorSettings
from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, ask, target


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    one = commands.add_parser(
        "query",
        help="run one read-only SELECT over the read models",
        description="Run one read-only SELECT over the read models of a running projector "
        "(see --data-dir), or of a DuckDB file with --file.",
        **examples(
            'ironstar query "SELECT event_type, sum(events) FROM event_counts GROUP BY ALL"',
            'ironstar query --csv "SELECT * FROM stream_counts"',
            'ironstar query --file /tmp/ironstar.duckdb "SELECT count(*) FROM users"',
        ),
    )
    one.add_argument("sql", help="one SELECT (or WITH … SELECT) statement")
    shape = one.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print one JSON object")
    shape.add_argument("--csv", action="store_true", help="print CSV with a header line")
    one.add_argument("--min-seq", type=int, default=0, help="wait until this sequence is applied")
    one.add_argument("--file", type=Path, help="query this DuckDB file instead (e.g. a snapshot)")
    add_data_dir(one)
    one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run one read-only SELECT against the running projector (or `--file`) and print its rows (a
    table, or JSON with --json); exit status 0. Raises Invalid for an unreadable file or a
    refused statement, Unavailable when no projector answers."""
    if args.file is not None:
        from projector import sql
        from projector.readmodel_file import LOCKED_DOWN

        try:
            con = duckdb.connect(str(args.file), read_only=True, config=dict(LOCKED_DOWN))
        except duckdb.Error as exc:
            raise Invalid(f"cannot open {args.file}: {exc}", field="file") from None
        settings = ProjectorSettings.from_env()
        deadline = time.monotonic() + settings.sql_timeout_s
        result = sql.run(
            con.cursor(), args.sql, deadline, settings.sql_max_rows, settings.max_answer_bytes,
            settings.sql_timeout_s,
        )  # fmt: skip
        answer: dict[str, Any] = msgspec.json.decode(
            sql.encode({"sequence": None, "result": result})
        )
    else:
        answer = asyncio.run(ask(target(args).nats, "sql", "sql", {"sql": args.sql}, args.min_seq))
    result = answer["result"]
    if args.json:
        print(json.dumps(answer, default=str))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(result["columns"])
        writer.writerows(result["rows"])
    else:
        print(table(result["columns"], result["rows"]))
        cut = result["truncated_by"]
        limit = f"{result['max_rows']} rows" if cut == "rows" else f"{result['max_bytes']:,} bytes"
        more = f", truncated at {limit}" if cut else ""
        count = len(result["rows"])
        print(f"({count} row{'' if count == 1 else 's'}{more})", file=sys.stderr)
    return 0


def table(columns: list[str], rows: list[list[Any]]) -> str:
    """An aligned text table: numbers to the right, everything else to the left."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r[i], int | float) for r in rows if r[i] is not None)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    return "NULL" if value is None else str(value)
