"""Restarting `ironstar up` and running more than one: the real command, as a person runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ironstar.datadir import holder
from ironstar.ports import free_port
from tests.support.processes import children, run_cli
from tests.support.up import Up
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

MakeUp = Callable[..., Up]


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[MakeUp]:
    """Start `ironstar up` processes; whatever still runs at the end is stopped (or killed)."""
    started: list[Up] = []

    def make(data_dir: Path, port: int, *args: str, **kwargs: object) -> Up:
        log = tmp_path / f"up-{len(started)}.log"
        up = Up(data_dir, port, log, *args, **kwargs).start()  # type: ignore[arg-type]
        started.append(up)
        return up

    yield make
    for up in reversed(started):
        try:
            up.interrupt(timeout=20)
        except AssertionError:
            up.kill()


def test_a_stack_stopped_with_an_sse_client_attached_starts_again_at_once_on_its_port(
    make_up: MakeUp, tmp_path: Path
) -> None:
    data, port = tmp_path / "data", free_port()
    first = make_up(data, port).ready()
    assert first.add_todo("groceries", "milk").status_code == 200
    # An SSE client attached when the stack stops, that keeps its socket open (as a browser
    # tab does): the server closes the connection first, so its end of it stays bound to the
    # port (FIN_WAIT2, then TIME_WAIT) for about a minute after the stack has gone.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as tab:
        tab.sendall(
            b"GET /api/events?last_event_id=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Accept: text/event-stream\r\n\r\n"
        )
        until(lambda: b"id:" in tab.recv(65536), 20, lambda: "no SSE frame")
        assert first.interrupt() == 0
        assert _bound_elsewhere(port), "the test did not leave the port's socket bound"
        started = time.monotonic()
        second = make_up(data, port).ready(timeout=60)
    assert "is busy" not in second.output()
    assert time.monotonic() - started < 45, "the restart waited for TIME_WAIT to pass"
    assert httpx.get(f"{second.url}/api/todo-lists/groceries", timeout=10).json()["result"]["items"]


def _bound_elsewhere(port: int) -> bool:
    """A plain bind (no SO_REUSEADDR) of the port fails: a socket of the old stack holds it."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def test_make_run_takes_the_port_from_the_settings_variable_and_options_from_args(
    make_up: MakeUp, tmp_path: Path
) -> None:
    data, port = tmp_path / "data", free_port()
    argv = ["make", "--no-print-directory", "run", f"ARGS=--data-dir {data}"]
    up = make_up(data, port, argv=argv, env={"IRONSTAR_GATEWAY_PORT": str(port)}).ready()
    assert f"dashboard  http://127.0.0.1:{port}/" in up.output()
    assert up.address()["http_url"] == f"http://127.0.0.1:{port}"
    up.interrupt()  # Ctrl-C reaches make (which dies of it) and ironstar up, which stops all
    until(lambda: holder(data) is None, 30, lambda: f"{data} still locked: {up.output()}")
    assert not (data / "up.json").exists()


def test_a_second_up_on_the_same_data_dir_is_refused_naming_the_first_and_touching_nothing(
    make_up: MakeUp, tmp_path: Path
) -> None:
    data, port = tmp_path / "data", free_port()
    first = make_up(data, port).ready()
    pid = first.process.pid  # type: ignore[union-attr]
    files = {name: (data / name).read_bytes() for name in ("up.json", "nats-server.conf")}
    stamps = {name: (data / name).stat().st_mtime_ns for name in files}

    asked = free_port()
    second = make_up(data, asked)
    assert second.wait(30) == 1
    said = second.output()
    assert f"is in use by `ironstar up` (pid {pid}, {first.url})" in said, said
    assert "nats-server" not in said.split("is in use")[0]  # refused before starting anything
    assert "ironstar: stopped" not in said  # it stopped nothing: nothing was its own
    # The hint is the command that was run, with its own data dir and the port it asked for.
    assert f"up --data-dir {data}-2 --http-port {asked}`" in said, said
    assert "make run" not in said and "8001" not in said
    for name, content in files.items():
        assert (data / name).read_bytes() == content, f"{name} was rewritten"
        assert (data / name).stat().st_mtime_ns == stamps[name], f"{name} was touched"

    status = run_cli({}, "status", "--data-dir", str(data))
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"(pid {pid})" in status.stderr and "gateway      up" in status.stdout


def test_a_busy_port_says_whether_ironstar_serves_it_and_how_to_choose_another(
    make_up: MakeUp, tmp_path: Path
) -> None:
    port = free_port()
    first = make_up(tmp_path / "one", port).ready()
    second = make_up(tmp_path / "two", port)
    assert second.wait(30) == 1
    said = second.output()
    assert f"HTTP port 127.0.0.1:{port} is busy: an Ironstar gateway already serves" in said
    hint = re.search(r"Choose another port: `(.*)`", said)
    assert hint is not None, said
    assert hint.group(1).split()[1:4] == ["up", "--data-dir", str(tmp_path / "two")], said
    assert "make run" not in said
    assert first.process is not None and first.process.poll() is None

    # Run by `make run`, with the port from the settings: `make run ARGS=...` again, keeping
    # the user's --data-dir, with a port that is free now.
    nine = tmp_path / "nine"
    argv = ["make", "--no-print-directory", "run", f"ARGS=--data-dir {nine}"]
    by_make = make_up(nine, port, argv=argv, env={"IRONSTAR_GATEWAY_PORT": str(port)})
    assert by_make.wait(60) != 0
    hint = re.search(
        rf"Choose another port: `make run ARGS='--data-dir {nine} --http-port (\d+)'`",
        by_make.output(),
    )
    assert hint is not None, by_make.output()
    assert int(hint.group(1)) != port

    with socket.socket() as other:  # something that is not Ironstar
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        third = make_up(tmp_path / "three", taken)
        assert third.wait(30) == 1
        assert "another program listens there (not Ironstar)" in third.output()


def test_up_restarts_its_nats_server_after_kill_9_and_loses_nothing_acknowledged(
    make_up: MakeUp, tmp_path: Path
) -> None:
    up = make_up(tmp_path / "data", free_port()).ready()
    acknowledged = [f"before{i}" for i in range(5)]
    for todo in acknowledged:
        assert up.add_todo("kill9", todo).status_code == 200
    nats = up.nats_pid()
    assert nats is not None
    subprocess.run(["kill", "-9", str(nats)], check=True)

    def restarted() -> bool:
        return "nats-server was killed by SIGKILL" in up.output() and up.nats_pid() not in (
            None,
            nats,
        )

    until(restarted, 20, up.output)

    def accepted() -> bool:
        return up.add_todo("kill9", f"after{time.monotonic_ns()}").status_code == 200

    until(accepted, 30, up.output)
    todos = httpx.get(f"{up.url}/api/todo-lists/kill9", timeout=10).json()["result"]["items"]
    ids = {t["todo_id"] for t in todos}
    assert set(acknowledged) <= ids, ids
    assert up.process is not None and up.process.poll() is None


def test_up_stops_everything_saying_why_when_nats_server_keeps_dying(
    make_up: MakeUp, tmp_path: Path
) -> None:
    up = make_up(tmp_path / "data", free_port()).ready()
    assert up.process is not None
    process = up.process
    for kills in range(1, 5):
        nats = up.nats_pid()
        assert nats is not None
        subprocess.run(["kill", "-9", str(nats)], check=True)

        def handled(restarts: int = kills) -> bool:
            said = up.output()
            return "stopping everything" in said or said.count("running again") == restarts

        until(handled, 30, up.output)
        if process.poll() is not None or "stopping everything" in up.output():
            break
    assert up.wait(30) == 1
    said = up.output()
    assert "nats-server was killed by SIGKILL" in said
    assert "it died 4 times within 60 s; stopping everything" in said, said
    assert not (tmp_path / "data" / "up.json").exists()
    for service in ("gateway", "projector", "writer"):  # NATS was gone before they stopped
        text = (tmp_path / "data" / "logs" / f"{service}.log").read_text()
        assert "Application shutdown failed" not in text, text[-3000:]
        assert "Traceback" not in text, f"{service}: {text[-3000:]}"


def test_ctrl_c_stops_the_services_before_nats_and_logs_no_failed_shutdown(
    make_up: MakeUp, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    up = make_up(data, free_port()).ready()
    assert up.add_todo("shutdown", "bread").status_code == 200
    with httpx.stream("GET", f"{up.url}/api/events?last_event_id=0", timeout=30) as feed:
        lines = feed.iter_lines()
        until(lambda: next(lines).startswith("id:"), 20, lambda: "no SSE frame")
        assert up.interrupt() == 0  # SIGINT to the whole process group, as a terminal does
    for log in (data / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert "Application shutdown failed" not in text, f"{log.name}: {text[-2000:]}"
        assert "Traceback" not in text, f"{log.name}: {text[-2000:]}"
    # In order: nats-server begins to shut down only after every service has finished.
    nats_log = (data / "logs" / "nats-server.log").read_text()
    stamp = re.search(r"\] (\S+ \S+) \[INF\] Initiating Shutdown", nats_log)
    assert stamp is not None, nats_log[-2000:]
    nats_down = datetime.strptime(stamp.group(1), "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=UTC)
    for service in ("gateway", "projector", "writer"):
        lines = (data / "logs" / f"{service}.log").read_text().splitlines()
        last = json.loads(lines[-1])["timestamp"]
        assert datetime.fromisoformat(last) <= nats_down, f"{service} logged after NATS went"
    assert "ironstar: stopped" in up.output()
    assert not (data / "up.json").exists()


def test_the_services_of_a_killed_up_stop_by_themselves(make_up: MakeUp, tmp_path: Path) -> None:
    """kill -9 of `ironstar up` (or the OOM killer) left its services running, in sessions of
    their own; now each reads the end of its supervisor's lifeline and stops cleanly. Its
    nats-server, which cannot watch one, is left (docs/operations.md) and stopped here."""
    data = tmp_path / "data"
    up = make_up(data, free_port()).ready()
    assert up.process is not None
    nats = up.nats_pid()
    services = [pid for pid in children(up.process.pid) if pid != nats]
    assert len(services) == 3 and nats is not None
    os.kill(up.process.pid, signal.SIGKILL)
    up.process.wait()
    try:
        until(lambda: not any(_running(pid) for pid in services), 30,
              lambda: f"still running: {[p for p in services if _running(p)]}")  # fmt: skip
    finally:
        os.kill(nats, signal.SIGTERM)
    for service in ("gateway", "projector", "writer"):
        text = (data / "logs" / f"{service}.log").read_text()
        assert "supervisor_gone" in text and '"stopped"' in text, f"{service}: {text[-2000:]}"
        assert "Traceback" not in text, f"{service}: {text[-3000:]}"


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie no parent reaped yet has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
