"""`ironstar cluster up|down` as a user runs it: foreground with Ctrl-C, or detached."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from common.settings import app_name
from ironstar.ports import free_port
from tests.support.processes import children, run_cli
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

SMALL = [
    "--nats",
    "3",
    "--writers",
    "1",
    "--projectors",
    "1",
    "--gateways",
    "1",
    "--http-port",
    "0",
]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


def _command(gateway: str) -> int:
    reply = httpx.post(
        f"{gateway}api/commands/todo_list/ops",
        json={"type": "add_todo", "payload": {"todo_id": "a", "text": "replicated"}},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    sequence: int = reply.json()["sequence"]
    return sequence


def test_detached_cluster_is_stopped_by_cluster_down_leaving_nothing(tmp_path: Path) -> None:
    data, port = tmp_path / "cluster", free_port()
    up = subprocess.run(
        [sys.executable, "-m", "ironstar", "cluster", "up", *SMALL[:-2], "--data-dir", str(data),
         "--detach"],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "IRONSTAR_GATEWAY_PORT": str(port)},
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    assert all(line.startswith("ironstar") for line in up.stdout.splitlines()), up.stdout
    state = json.loads((data / "cluster.json").read_text())
    assert state["gateway-1"]["url"] == f"http://127.0.0.1:{port}/"  # the setting is honoured
    pids = [entry["pid"] for entry in state.values()]
    try:
        assert len(pids) == 6 and all(_alive(pid) for pid in pids)
        assert "IRONSTAR_NATS_URL=nats://" in up.stdout
        assert "nats_disconnected" not in up.stdout + up.stderr, "a warning on success"
        sequence = _command(state["gateway-1"]["url"])
        status = run_cli({}, "status", "--data-dir", str(data))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"`ironstar cluster` in {data}" in status.stderr
        assert state["gateway-1"]["url"].rstrip("/") in status.stdout
        recorded = json.loads((data / "app.json").read_text())  # the app status probes
        assert recorded["name"] == app_name() and recorded["aggregate"]
        rows = run_cli(
            {},
            "query",
            "--data-dir",
            str(data),
            "--min-seq",
            str(sequence),
            "SELECT text FROM todos",
        )
        assert "replicated" in rows.stdout, rows.stderr
        again = run_cli({}, "cluster", "up", *SMALL, "--data-dir", str(data), "--detach")
        assert again.returncode == 1
        assert "is in use by a detached `ironstar cluster up`" in again.stderr, again.stderr
        assert "ironstar cluster down --data-dir" in again.stderr
        assert json.loads((data / "cluster.json").read_text()) == state, "the record was touched"

        os.kill(state["nats-2"]["pid"], signal.SIGKILL)
        os.kill(state["writer-1"]["pid"], signal.SIGTERM)
        until(lambda: not _alive(state["writer-1"]["pid"]), 30, lambda: "writer-1 lives")
        broken = run_cli({}, "status", "--data-dir", str(data))
        assert broken.returncode == 1, broken.stdout
        for name in ("nats-2", "writer-1"):
            assert re.search(rf"{name}\s+DOWN .*process gone", broken.stdout), broken.stdout
        # (the NATS line may say DOWN too while the cluster elects new stream leaders)
        for name in ("nats-1", "nats-3", "projector-1", "gateway-1"):
            assert re.search(rf"{name}\s+up ", broken.stdout), broken.stdout
        members = json.loads(run_cli({}, "status", "--json", "--data-dir", str(data)).stdout)
        kinds = sorted(m["kind"] for m in members["members"])
        assert kinds == ["gateway", "nats", "nats", "nats", "projector", "writer"]
        assert {m["name"] for m in members["members"] if not m["up"]} == {"nats-2", "writer-1"}
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "ironstar", "cluster", "down", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids)
    assert not (data / "cluster.json").exists()
    for command in ("status", "query"):
        gone = run_cli({}, command, "--data-dir", str(data), *(["SELECT 1"] * (command == "query")))
        said = gone.stdout + gone.stderr
        # the hint names the command as it was run (`ironstar`, `.venv/bin/ironstar`, ...)
        assert gone.returncode == 1 and f"ironstar cluster up --data-dir {data}`" in said, said
        assert "make run" not in said


def test_cluster_up_on_a_busy_port_suggests_only_cluster_up_keeping_its_arguments(
    tmp_path: Path,
) -> None:
    data = tmp_path / "cluster"
    with socket.socket() as other:  # the port IRONSTAR_GATEWAY_PORT names is taken
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        done = run_cli(
            {"IRONSTAR_GATEWAY_PORT": str(taken)},
            "cluster", "up", "--nats", "1", "--gateways", "2", "--data-dir", str(data), "--detach",
        )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 1
    assert f"HTTP port 127.0.0.1:{taken} is busy" in said, said
    hint = re.search(r"Choose another port: `\S+ (cluster up .*)`", said)
    assert hint is not None, said
    words = hint.group(1).split()
    assert words[:-2] == ["cluster", "up", "--nats", "1", "--gateways", "2", "--data-dir",
                          str(data), "--detach"]  # fmt: skip
    assert words[-2] == "--http-port" and int(words[-1]) > taken
    assert "make run" not in said and not (data / "cluster.json").exists()


def test_foreground_cluster_prints_every_url_and_stops_everything_on_ctrl_c(
    tmp_path: Path,
) -> None:
    output = tmp_path / "up.log"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ironstar", "cluster", "up", *SMALL, "--data-dir",
             str(tmp_path / "cluster")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def running() -> bool:
            assert process.poll() is None, output.read_text()
            return "running (Ctrl-C" in output.read_text()

        until(running, 90, output.read_text)
        text = output.read_text()
        for name in ("nats-1", "nats-2", "nats-3", "writer-1", "projector-1", "gateway-1"):
            assert re.search(rf"{name}\s+(nats|http)://127\.0\.0\.1:\d+", text), name
        gateway = re.search(r"gateway-1\s+(http://\S+)", text)
        assert gateway is not None
        _command(gateway.group(1))
        started = children(process.pid)
        assert len(started) == 6
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert not any(_alive(pid) for pid in started)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
