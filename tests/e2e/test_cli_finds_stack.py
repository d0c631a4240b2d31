"""The CLI finds the stack it is asked about: `--data-dir`, explicit settings first, says which."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironstar.ports import free_port
from tests.support.up import ROOT, Up

pytestmark = pytest.mark.e2e


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`ironstar ARGS` run by a person in `cwd`, with no IRONSTAR_* variable unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IRONSTAR_")}
    return subprocess.run(
        [sys.executable, "-m", "ironstar", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, Up]]:
    """Two stacks: A in `<a>/.ironstar` (the default of a person in `<a>`), B elsewhere."""
    root = tmp_path_factory.mktemp("stacks")
    (root / "a").mkdir()
    a = Up(root / "a" / ".ironstar", free_port(), root / "a.log").start()
    b = Up(root / "b", free_port(), root / "b.log").start()
    try:
        a.ready(), b.ready()
        for up, list_id in ((a, "only-in-a"), (b, "only-in-b")):
            reply = up.add_todo(list_id, "x")
            assert reply.status_code == 200, reply.text
        yield a, b
    finally:
        for up in (a, b):
            try:
                up.interrupt()
            except AssertionError:
                up.kill()


def _texts(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_query_snapshot_and_rebuild_take_data_dir_and_say_which_stack(
    two: tuple[Up, Up], tmp_path: Path
) -> None:
    _, b = two
    where = ("--data-dir", str(b.data_dir))
    sql = "SELECT list_id FROM todos"
    done = cli(tmp_path, "query", *where, "--min-seq", "1", sql)
    assert "only-in-b" in _texts(done) and "only-in-a" not in done.stdout
    assert f"ironstar: using `ironstar up` in {b.data_dir}" in done.stderr
    assert f"(pid {b.process.pid})" in done.stderr  # type: ignore[union-attr]
    assert "(1 row)" in done.stderr, done.stderr

    copy = tmp_path / "copy.duckdb"
    snap = cli(tmp_path, "snapshot", *where, "--output", str(copy))
    assert "snapshot at sequence" in _texts(snap) and copy.exists()
    assert "only-in-b" in _texts(cli(tmp_path, "query", "--file", str(copy), sql))

    rebuilt = cli(tmp_path, "rebuild", *where, "--projection", "todo_lists")
    assert "rebuilt todo_lists" in _texts(rebuilt), rebuilt.stderr
    assert f"using `ironstar up` in {b.data_dir}" in rebuilt.stderr


def test_explicit_nats_url_wins_over_the_stack_found_in_the_working_directory(
    two: tuple[Up, Up],
) -> None:
    a, b = two
    here = a.data_dir.parent  # a person in A's directory, pointing at B on purpose
    found = b.address()
    explicit = {
        "IRONSTAR_NATS_URL": str(found["nats_url"]),
        "IRONSTAR_NATS_USER": str(found["nats_user"]),
        "IRONSTAR_NATS_PASSWORD": str(found["nats_password"]),
    }
    done = cli(here, "query", "--min-seq", "1", "SELECT list_id FROM todos", **explicit)
    assert "only-in-b" in _texts(done) and "only-in-a" not in done.stdout
    assert f"using IRONSTAR_NATS_URL={found['nats_url']}" in done.stderr

    mine = cli(here, "query", "--min-seq", "1", "SELECT list_id FROM todos")
    assert "only-in-a" in _texts(mine) and "using `ironstar up` in .ironstar" in mine.stderr
    # The URL alone of the local stack (as `export IRONSTAR_NATS_URL=...` gives it): its
    # operator credentials come from ./.ironstar/up.json.
    url_only = cli(here, "status", IRONSTAR_NATS_URL=str(a.address()["nats_url"]))
    assert url_only.returncode == 0, url_only.stdout + url_only.stderr
    assert f"gateway      up    {a.url}/" in url_only.stdout


def test_demo_feeds_the_running_stack_by_default(two: tuple[Up, Up]) -> None:
    a, _ = two
    done = cli(a.data_dir.parent, "demo", "--rate", "20", "--duration", "1")
    assert f"commands/s to {a.url}" in _texts(done)
    assert "commands accepted" in done.stdout


def test_demo_says_clearly_when_the_url_is_not_an_ironstar_gateway(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = cli(tmp_path, "demo", "--url", url, "--duration", "2")
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{url} answered HTTP 501" in done.stdout, done.stdout
    assert "is it an Ironstar gateway?" in done.stdout


@pytest.mark.parametrize(
    "args",
    [("status",), ("query", "SELECT 1"), ("snapshot",), ("rebuild",), ("demo",)],
    ids=lambda a: a[0],
)
def test_with_nothing_running_each_command_says_so_at_once_and_how_to_start(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    started = time.monotonic()
    done = cli(tmp_path, *args)
    assert time.monotonic() - started < 10  # the interpreter's start; no 3 s connect wait
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "no Ironstar stack runs here" in said and "make run" in said, said
    assert "Traceback" not in said


def test_snapshot_with_no_projector_running_copies_the_file_where_up_left_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / ".ironstar"
    up = Up(data, free_port(), tmp_path / "up.log").start()
    try:
        up.ready()
        assert up.add_todo("kept", "x").status_code == 200
        until_applied = cli(tmp_path, "query", "--min-seq", "1", "SELECT 1")
        assert until_applied.returncode == 0, until_applied.stderr
    finally:
        assert up.interrupt() == 0
    copy = tmp_path / "offline.duckdb"
    done = cli(tmp_path, "snapshot", "--output", str(copy))
    assert "snapshot at sequence 1" in _texts(done), done.stderr
    assert f"copying {Path('.ironstar/projector/projector-1.duckdb')}" in done.stderr
    assert "Buy x" in _texts(cli(tmp_path, "query", "--file", str(copy), "SELECT text FROM todos"))


def test_the_banner_says_exactly_what_to_type(two: tuple[Up, Up]) -> None:
    a, _ = two
    line = next(x for x in a.output().splitlines() if x.strip().startswith("try"))
    command = line.split()[1]
    assert line.split()[2] == "status"
    runnable = (ROOT / command).exists() or Path(command).is_absolute() or command == "ironstar"
    assert runnable, line
    if command != "ironstar":
        assert f"`source {Path(command).parent}/activate` once" in line
        assert (ROOT / Path(command).parent / "activate").exists() or Path(command).is_absolute()
    assert f"{command} demo" in a.output()
