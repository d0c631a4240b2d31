"""The CLI a person uses first: `ironstar demo` feeds a stack, `ironstar status` reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ironstar.cli import COMMANDS, parser
from tests.support.stack import Stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _ironstar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironstar", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_demo_feeds_commands_and_status_reports_stream_consumers_and_lag(
    stack: Stack, tmp_path: Path
) -> None:
    demo = _ironstar(stack.env, "demo", "--url", stack.url, "--rate", "40", "--duration", "1")
    assert demo.returncode == 0, demo.stderr
    assert "commands accepted" in demo.stdout
    accepted = int(demo.stdout.rsplit("ironstar demo: ", 1)[1].split()[0])
    assert accepted >= 10

    async def status() -> dict[str, object]:
        done = _ironstar(
            stack.env, "status", "--json", "--url", stack.url, "--data-dir", str(tmp_path / "none")
        )
        report: dict[str, object] = json.loads(done.stdout)
        report["returncode"] = done.returncode
        return report

    report = await eventually(status, lambda r: r["projector"]["lag"] == 0, timeout=20)  # type: ignore[index]
    assert report["returncode"] == 0
    # Accepted commands that change nothing (clearing an empty list) append no event.
    assert 0 < report["stream"]["events"] <= accepted  # type: ignore[index]
    assert report["projector"]["at"] == report["stream"]["last_sequence"]  # type: ignore[index]
    assert report["writer"]["up"] and report["gateway"]["http"] == 200  # type: ignore[index]
    names = [c["name"] for c in report["consumers"]]  # type: ignore[attr-defined]
    assert "projector-projector-1" in names

    readable = _ironstar(stack.env, "status", "--url", stack.url, "--data-dir", str(tmp_path))
    assert "events behind" in readable.stdout and "writer       up" in readable.stdout


def test_status_says_what_is_down_and_exits_1_when_nothing_runs(tmp_path: Path) -> None:
    env = {"IRONSTAR_NATS_URL": "nats://127.0.0.1:1"}
    done = _ironstar(env, "status", "--url", "http://127.0.0.1:1", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert "nats-server  DOWN" in done.stdout and "gateway      DOWN" in done.stdout


def test_every_command_has_help_with_an_example() -> None:
    root = parser()
    commands = next(a for a in root._actions if a.dest == "command")
    assert len(commands.choices) >= len(COMMANDS)  # type: ignore[arg-type]
    for name, sub in commands.choices.items():  # type: ignore[union-attr]
        text = sub.format_help()
        assert "Example" in text, f"`ironstar {name} --help` shows no example"
