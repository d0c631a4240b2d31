"""Snapshots: taken through the replica's own connection, so the live file stays locked
against other processes, and written in a storage version the pip DuckDB CLI reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.errors import Invalid
from common.settings import NatsSettings
from examples.todo.history import domain_events
from tests.support.projections import ask, fold, replica, sql, store

CLI = Path(sys.executable).parent / "duckdb"  # from the `duckdb-cli` package (test extra)


def storage_version(path: Path) -> int:
    """The storage version number in a DuckDB file's main header."""
    header = path.read_bytes()[:20]
    assert header[8:12] == b"DUCK", header
    return int.from_bytes(header[12:20], "little")


def open_elsewhere(path: Path, read_only: bool) -> subprocess.CompletedProcess[str]:
    code = f"import duckdb; duckdb.connect({str(path)!r}, read_only={read_only})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


async def test_after_snapshots_another_process_still_cannot_open_the_live_file(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(500, lists=5, users=5))
    live = tmp_path / "lock.duckdb"
    async with replica(nats_settings, tmp_path, "lock"):
        await sql(nc, nats_settings, "SELECT 1", last)
        for _ in range(2):
            taken = (await ask(nc, nats_settings, "snapshot", "snapshot"))["result"]
            assert storage_version(Path(taken["path"])) <= 68 and taken["sequence"] == last
            for read_only in (False, True):
                other = open_elsewhere(live, read_only)
                assert other.returncode != 0 and "lock" in other.stderr.lower(), other.stderr
        assert await sql(nc, nats_settings, "SELECT sequence FROM checkpoint") == [[last]]


async def test_the_pip_duckdb_cli_opens_a_snapshot_read_only_and_reads_its_rows(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    events = list(domain_events(800, lists=8, users=8, seed=3))
    last = await store(nc, nats_settings, events)
    async with replica(nats_settings, tmp_path, "cli"):
        await sql(nc, nats_settings, "SELECT 1", last)
        taken = (await ask(nc, nats_settings, "snapshot", "snapshot"))["result"]
    path = Path(taken["path"])
    assert storage_version(path) <= 68  # what duckdb-cli 1.5 reads
    assert cli(path, "SELECT sequence FROM checkpoint") == [{"sequence": last}]
    todos = cli(path, "SELECT list_id, todo_id, text, completed, deleted FROM todos")
    expected, _users = fold(events)
    assert {tuple(row.values()) for row in todos} == expected
    assert cli(path, "SELECT count(*) >= 0 AS ok FROM throughput") == [{"ok": True}]


def cli(path: Path, query: str) -> list[dict[str, object]]:
    """Rows of one query run by the DuckDB CLI on `path`, opened read-only."""
    shown = subprocess.run(
        [str(CLI), "-readonly", "-json", str(path), "-c", query],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    rows: list[dict[str, object]] = json.loads(shown.stdout)
    return rows


async def test_a_snapshot_storage_version_can_be_chosen_and_a_wrong_one_is_a_422(
    nc: Client, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    last = await store(nc, nats_settings, domain_events(50, lists=2, users=2))
    async with replica(nats_settings, tmp_path, "versions"):
        await sql(nc, nats_settings, "SELECT 1", last)
        older = await ask(nc, nats_settings, "snapshot", "snapshot", storage_version="v1.2.0")
        assert storage_version(Path(older["result"]["path"])) == 65
        with pytest.raises(Invalid) as refused:
            await ask(nc, nats_settings, "snapshot", "snapshot", storage_version="v99")
        assert refused.value.detail["field"] == "storage_version"
