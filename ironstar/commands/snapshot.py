"""`ironstar snapshot`: a consistent read-only copy of the read models, for any DuckDB client.

Asks a running projector over NATS (`IRONSTAR_NATS_URL`): between two batches it folds
its WAL into the file and copies it into `<data dir>/snapshots/`, then goes on writing.
With `--output` the copy is moved there (the projector's data dir must be reachable from
here, as with `ironstar up`). With no projector running, the replica's file is copied
directly: from `IRONSTAR_PROJECTOR_DATA_DIR` when set, else from where `ironstar up` keeps
it (`<data dir>/projector/`, `<data dir>/projectors/` for a cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from common.errors import Unavailable
from common.settings import ProjectorSettings
from ironstar import local
from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, ask


def add(commands: Any) -> None:
    one = commands.add_parser(
        "snapshot",
        help="copy the read models to a DuckDB file any client can open",
        description="Take a consistent copy of a projector replica's DuckDB file while it "
        "keeps writing.",
        **examples(
            "ironstar snapshot --output /tmp/ironstar.duckdb",
            'ironstar query --file /tmp/ironstar.duckdb "SELECT * FROM todos"',
        ),
    )
    one.add_argument("--output", type=Path, help="move the copy here")
    add_data_dir(one)
    one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        stack = local.target(args.data_dir)
    except Unavailable as exc:  # nothing runs: the file may still be where `up` left it
        path, sequence = _offline(exc, local.projector_dir(args.data_dir or local.DEFAULT_DATA_DIR))
    else:
        stack.say()
        try:
            taken = asyncio.run(ask(stack.nats, "snapshot", "snapshot", {}))["result"]
            path, sequence = Path(taken["path"]), int(taken["sequence"])
        except Unavailable as exc:
            path, sequence = _offline(exc, stack.projector_dir)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, args.output)
        path = args.output
    print(f"snapshot at sequence {sequence}: {path}")
    return 0


def _offline(why: Unavailable, projector_dir: Path | None) -> tuple[Path, int]:
    """No projector answers: copy its file directly if nobody holds it."""
    from projector.readmodel import ReadModel

    settings = ProjectorSettings.from_env()
    explicit = "IRONSTAR_PROJECTOR_DATA_DIR" in os.environ
    folder = Path(settings.data_dir) if explicit or projector_dir is None else projector_dir
    source = folder / f"{settings.name}.duckdb"
    if not source.exists():
        raise Unavailable(f"{why.message}; and there is no read-model file at {source}") from None
    print(f"ironstar: no projector answers; copying {source} directly", file=sys.stderr)
    model = ReadModel(source)
    try:
        target = source.parent / "snapshots" / f"{settings.name}-{model.checkpoint}.duckdb"
        return target.resolve(), model.snapshot(target)
    finally:
        model.close()
