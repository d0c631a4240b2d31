"""`ironstar snapshot`: a consistent read-only copy of the read models, for any DuckDB client.

Asks a running projector over NATS (`IRONSTAR_NATS_URL`): between two batches it folds
its WAL into the file and copies it into `<data dir>/snapshots/`, then goes on writing.
With `--output` the copy is moved there (the projector's data dir must be reachable from
here, as with `ironstar up`). With no projector running, the replica's file under
`IRONSTAR_PROJECTOR_DATA_DIR` is copied directly.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path
from typing import Any

from common.errors import Unavailable
from common.settings import ProjectorSettings
from ironstar import local
from ironstar.commands.remote import ask


def add(commands: Any) -> None:
    one = commands.add_parser(
        "snapshot",
        help="copy the read models to a DuckDB file any client can open",
        description="Take a consistent copy of a projector replica's DuckDB file while it "
        "keeps writing.  Example: ironstar snapshot --output /tmp/ironstar.duckdb && "
        "duckdb -readonly /tmp/ironstar.duckdb",
    )
    one.add_argument("--output", type=Path, help="move the copy here")
    one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        taken = asyncio.run(ask(local.nats_settings(), "snapshot", "snapshot", {}))["result"]
        path, sequence = Path(taken["path"]), int(taken["sequence"])
    except Unavailable as exc:
        path, sequence = _offline(exc)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, args.output)
        path = args.output
    print(f"snapshot at sequence {sequence}: {path}")
    return 0


def _offline(why: Unavailable) -> tuple[Path, int]:
    """No projector answers: copy its file directly if nobody holds it."""
    from projector.readmodel import ReadModel

    settings = ProjectorSettings.from_env()
    source = Path(settings.data_dir) / f"{settings.name}.duckdb"
    if not source.exists():
        raise Unavailable(f"{why.message}; and there is no read-model file at {source}") from None
    model = ReadModel(source)
    try:
        target = source.parent / "snapshots" / f"{settings.name}-{model.checkpoint}.duckdb"
        return target.resolve(), model.snapshot(target)
    finally:
        model.close()
