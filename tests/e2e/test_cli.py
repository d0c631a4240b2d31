"""The CLI a person uses first: `ironstar demo` feeds a stack, `ironstar status` reports it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ironstar.cli import COMMANDS, parser
from ironstar.natsserver import free_port
from tests.support.processes import run_cli
from tests.support.stack import Stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _start(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ironstar", *args], stdout=out, stderr=subprocess.STDOUT
        )


async def test_demo_feeds_commands_and_status_reports_stream_consumers_and_lag(
    stack: Stack, tmp_path: Path
) -> None:
    demo = run_cli(stack.env, "demo", "--url", stack.url, "--rate", "40", "--duration", "3")
    assert demo.returncode == 0, demo.stderr
    assert "commands accepted" in demo.stdout
    accepted = int(demo.stdout.rsplit("ironstar demo: ", 1)[1].split()[0])
    assert accepted >= 10

    async def status() -> dict[str, object]:
        done = run_cli(stack.env, "status", "--json", "--url", stack.url)  # env wins
        report: dict[str, object] = json.loads(done.stdout)
        report["returncode"] = done.returncode
        return report

    report = await eventually(status, lambda r: r["projector"]["lag"] == 0, timeout=20)  # type: ignore[index]
    assert report["returncode"] == 0
    # Not one event per command: clearing an empty list appends none, clearing a list with
    # several completed todos appends several.
    assert report["stream"]["events"] > 0  # type: ignore[index]
    assert report["projector"]["at"] == report["stream"]["last_sequence"]  # type: ignore[index]
    assert report["writer"]["up"] and report["gateway"]["http"] == 200  # type: ignore[index]
    names = [c["name"] for c in report["consumers"]]  # type: ignore[attr-defined]
    assert "projector-projector-1" in names

    readable = run_cli(stack.env, "status", "--url", stack.url)
    assert "events behind" in readable.stdout and "writer       up" in readable.stdout


def test_status_says_what_is_down_and_exits_1_when_nothing_runs(tmp_path: Path) -> None:
    env = {"IRONSTAR_NATS_URL": "nats://127.0.0.1:1"}
    done = run_cli(env, "status", "--url", "http://127.0.0.1:1")
    assert done.returncode == 1
    assert "nats-server  DOWN" in done.stdout and "gateway      DOWN" in done.stdout
    assert "cannot reach NATS at nats://127.0.0.1:1: " in done.stdout
    assert "()" not in done.stdout  # the reason is never empty


def test_every_command_has_help_with_an_example() -> None:
    root = parser()
    commands = next(a for a in root._actions if a.dest == "command")
    assert len(commands.choices) >= len(COMMANDS)  # type: ignore[arg-type]
    for name, sub in commands.choices.items():  # type: ignore[union-attr]
        text = sub.format_help()
        assert "\nexamples:\n  " in text, f"`ironstar {name} --help` shows no example"
        examples = text.split("\nexamples:\n", 1)[1].splitlines()
        assert all(line.startswith("  ") and "    " not in line.strip() for line in examples)


async def test_up_with_demo_says_where_everything_is_and_status_finds_it_by_data_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "up.log"
    up = _start(log, "up", "--demo", "20", "--data-dir", str(data), "--http-port", str(port))
    try:

        async def status() -> dict[str, object]:
            assert up.poll() is None, log.read_text()
            if not (data / "up.json").exists():
                return {}
            done = run_cli({}, "status", "--json", "--data-dir", str(data))
            return json.loads(done.stdout) if done.stdout else {}

        report = await eventually(
            status,
            lambda r: r.get("stream", {}).get("events", 0) > 0,
            timeout=30,  # type: ignore[union-attr]
        )
        assert report["gateway"]["url"] == f"http://127.0.0.1:{port}"  # type: ignore[index]
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(15) == 0
    said = log.read_text()
    for line in ("writer      ready", "projector   ready", "gateway     ready"):
        assert line in said, said
    assert f"dashboard  http://127.0.0.1:{port}/" in said
    assert "NATS       nats://127.0.0.1:" in said and f"data       {data.resolve()}" in said
    assert not (data / "up.json").exists(), "up.json outlived the stack"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("cluster", "up"), "Start N nats-server nodes as one JetStream cluster"),
        (("cluster", "down"), "Stop exactly the processes"),
        (("demo",), "commands per second (default: 4)"),
        (("bench", "sse"), "(default: 10000)"),
        (("bench", "append"), "(default: 6000)"),
    ],
)
def test_help_describes_cluster_actions_and_shows_defaults(
    args: tuple[str, ...], expected: str
) -> None:
    done = run_cli({}, *args, "--help")
    assert done.returncode == 0
    assert expected in " ".join(done.stdout.split()), done.stdout
