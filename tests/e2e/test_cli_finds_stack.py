"""The CLI finds the stack it is asked about: `--data-dir`, explicit settings first, says which."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironstar.ports import free_port
from tests.support.up import ROOT, Up
from tests.support.waiting import until

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
    """Two stacks in `<a>`: A in `.ironstar` (the default of a person there), B beside it in
    `.ironstar-2` (as `make run ARGS='--data-dir .ironstar-2 ...'` starts it)."""
    root = tmp_path_factory.mktemp("stacks")
    (root / "a").mkdir()
    a = Up(root / "a" / ".ironstar", free_port(), root / "a.log").start()
    b = Up(root / "a" / ".ironstar-2", free_port(), root / "b.log").start()
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
    assert "1/1 events" in rebuilt.stderr and "done" in rebuilt.stderr, rebuilt.stderr
    helped = cli(tmp_path, "snapshot", "--help").stdout
    assert "default: leave it in" in " ".join(helped.split())


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
    # The same URL by another loopback name (localhost for 127.0.0.1) names the same stack.
    local = str(a.address()["nats_url"]).replace("127.0.0.1", "localhost")
    by_name = cli(here, "status", IRONSTAR_NATS_URL=local)
    assert by_name.returncode == 0, by_name.stdout + by_name.stderr
    assert "(`ironstar up` in .ironstar" in by_name.stderr


def test_a_nats_url_brings_the_gateway_of_the_stack_it_names_or_asks_for_one(
    two: tuple[Up, Up], tmp_path: Path
) -> None:
    a, b = two
    here, found = a.data_dir.parent, b.address()
    nats = str(found["nats_url"])
    demo = cli(here, "demo", "--rate", "20", "--duration", "1", IRONSTAR_NATS_URL=nats)
    assert f"commands/s to {b.url}" in _texts(demo), demo.stderr
    assert f"using IRONSTAR_NATS_URL={nats} (`ironstar up` in .ironstar-2" in demo.stderr
    assert f"NATS {nats}, HTTP {b.url}" in demo.stderr
    status = cli(here, "status", IRONSTAR_NATS_URL=nats)
    assert f"gateway      up    {b.url}/" in _texts(status), status.stderr
    assert a.url not in status.stdout + status.stderr

    # Where no stack listens at that URL, the gateway is named explicitly or asked for.
    creds = {
        "IRONSTAR_NATS_URL": nats,
        "IRONSTAR_NATS_USER": str(found["nats_user"]),
        "IRONSTAR_NATS_PASSWORD": str(found["nats_password"]),
    }
    for command in (("demo", "--duration", "1"), ("status",)):
        asked = cli(tmp_path, *command, **creds)
        said = asked.stdout + asked.stderr
        assert asked.returncode == 1 and "--url http://HOST:PORT" in said, said
        assert "127.0.0.1:8000" not in said and "Traceback" not in said
    by_setting = cli(tmp_path, "status", **creds, IRONSTAR_GATEWAY_PORT=str(b.port))
    assert f"gateway      up    {b.url}/" in _texts(by_setting)
    assert f"(gateway from IRONSTAR_GATEWAY_*): NATS {nats}, HTTP {b.url}" in by_setting.stderr
    by_flag = cli(tmp_path, "status", "--url", b.url, **creds)
    assert f"gateway      up    {b.url}/" in _texts(by_flag)
    assert f"HTTP {b.url}" in by_flag.stderr


def test_demo_stops_at_the_first_sign_of_a_wrong_target_with_advice_and_exit_1(
    two: tuple[Up, Up], tmp_path: Path
) -> None:
    a, _ = two
    wrong = cli(tmp_path, "demo", "--url", f"{a.url}/api", "--rate", "20", "--duration", "5")
    assert wrong.returncode == 1, wrong.stdout
    assert wrong.stdout.count("Not Found") <= 1, wrong.stdout
    assert "without /api" in wrong.stdout and "0 commands accepted, 0 rejected" in wrong.stdout
    assert f"did you mean --url {a.url}?" in wrong.stdout and "8000" not in wrong.stdout
    bare = a.url.removeprefix("http://")
    schemeless = cli(tmp_path, "demo", "--url", f"{bare}/", "--duration", "1")
    assert schemeless.returncode == 1 and "unknown url type" not in schemeless.stdout
    assert f"did you mean --url http://{bare}/?" in schemeless.stdout, schemeless.stdout
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(tmp_path, "demo", "--url", nobody, "--duration", "5")
    assert unreachable.returncode == 1 and f"cannot reach {nobody}" in unreachable.stdout


# SIGINT as a terminal delivers it: a suite started in the background (`make test &`) passes
# SIGINT ignored to its children, and Python then never raises KeyboardInterrupt. So the demo
# is exec'd from a Python that restores the default first (exec keeps it).
_CTRL_C_AS_IN_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def test_demo_into_a_closed_pipe_ends_quietly_and_ctrl_c_prints_the_summary(
    two: tuple[Up, Up], tmp_path: Path
) -> None:
    a, _ = two
    demo = [sys.executable, "-m", "ironstar", "demo", "--url", a.url, "--rate", "50"]
    piped = subprocess.run(
        ["sh", "-c", f"{shlex.join(demo)} --duration 20 | head -2"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert len(piped.stdout.splitlines()) == 2
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr

    interruptible = [sys.executable, "-c", _CTRL_C_AS_IN_A_TERMINAL, *demo[1:]]
    with subprocess.Popen(
        interruptible, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    ) as running:
        assert running.stdout is not None
        until(lambda: "#" in running.stdout.readline(), 20, lambda: "no accepted command")  # type: ignore[union-attr]
        running.send_signal(signal.SIGINT)
        rest = running.stdout.read()
        assert running.wait(20) == 0
    assert re.search(r"\d+ commands accepted, \d+ rejected \(stopped\)", rest), rest


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
    assert done.returncode == 1
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


def test_status_says_connection_refused_at_once_when_nothing_listens_at_the_nats_url(
    tmp_path: Path,
) -> None:
    nats, started = f"nats://127.0.0.1:{free_port()}", time.monotonic()
    done = cli(tmp_path, "status", "--url", "http://127.0.0.1:1", IRONSTAR_NATS_URL=nats)
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert f"cannot reach NATS at {nats}: Connection refused" in done.stdout, done.stdout
    assert "TimeoutError" not in done.stdout
    unknown = cli(tmp_path, "status", IRONSTAR_NATS_URL=nats)  # no --url: both problems
    assert unknown.returncode == 1
    assert f"cannot reach NATS at {nats}: Connection refused" in unknown.stdout, unknown.stdout
    assert "--url http://HOST:PORT" in unknown.stdout


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
    stopped = cli(tmp_path, "status")
    assert stopped.returncode == 1
    assert "none running in ./.ironstar" in stopped.stdout, stopped.stdout


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
