"""`ironstar snapshot`: a consistent read-only copy of the read models, for any DuckDB client.

Asks a running projector over NATS (`IRONSTAR_NATS_URL`): it copies its tables, as of one
commit, through its own connection into a new file under `<data dir>/snapshots/` while it
goes on writing, in a storage version older DuckDB clients read (`--storage-version`,
default `v1.5.0`: the pip `duckdb-cli` 1.5 opens it).
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
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    one = commands.add_parser(
        "snapshot",
        help="copy the read models to a DuckDB file any client can open",
        description="Take a consistent copy of a projector replica's DuckDB file while it "
        "keeps writing.",
        **examples(
            "ironstar snapshot --output /tmp/ironstar.duckdb",
            'ironstar query --file /tmp/ironstar.duckdb "SELECT * FROM stream_counts"',
        ),
    )
    one.add_argument(
        "--output",
        type=Path,
        help="move the copy here (default: leave it in the replica's snapshots/ folder, "
        "e.g. .ironstar/projector/snapshots/; the path is printed)",
    )
    add_data_dir(one)
    one.add_argument(
        "--storage-version",
        help="DuckDB storage version of the copy, e.g. v1.5.0 (default: "
        "IRONSTAR_PROJECTOR_SNAPSHOT_STORAGE_VERSION)",
    )
    one.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Copy the read models to `--output` (through the running projector, or straight from its file
    when none runs) and print the sequence they hold; exit status 0. Raises Unavailable when
    neither is possible."""
    try:
        stack = local.target(args.data_dir)
    except Unavailable as exc:  # nothing runs: the file may still be where `up` left it
        projector_dir = local.projector_dir(args.data_dir or local.DEFAULT_DATA_DIR)
        path, sequence = _offline(exc, projector_dir, args.storage_version)
    else:
        stack.say()
        params = {"storage_version": args.storage_version} if args.storage_version else {}
        try:
            taken = asyncio.run(ask(stack.nats, "snapshot", "snapshot", params))["result"]
            path, sequence = Path(taken["path"]), int(taken["sequence"])
        except Unavailable as exc:
            path, sequence = _offline(exc, stack.projector_dir, args.storage_version)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, args.output)
        path = args.output
    print(f"snapshot at sequence {sequence}: {path}")
    return 0


def _offline(
    why: Unavailable, projector_dir: Path | None, storage_version: str | None
) -> tuple[Path, int]:
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
        version = storage_version or settings.snapshot_storage_version
        return target.resolve(), model.snapshot(target, version)
    finally:
        model.close()
