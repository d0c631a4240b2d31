"""The command line refuses an app that cannot load or cannot do what is asked in one line
and exit 2, never a traceback, and a service refuses to start the same way (the command
line's half of tests/unit/test_app_loading.py and tests/unit/test_catalogue.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broken_apps import write_apps

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(write_apps(tmp_path))
    return tmp_path


def _ironstar(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRONSTAR_APP": "nodemo"}
    return subprocess.run(
        [sys.executable, "-m", "ironstar", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("demo", "--url", "http://127.0.0.1:9", "--duration", "1"), "declares no demo traffic"),
        (("up", "--app", "nodemo", "--demo", "--data-dir", "d"), "declares no demo traffic"),
        (("bench", "project", "--events", "10"), "declares no history"),
        (("up", "--app", "../nodemo", "--data-dir", "d"), "not a package name"),
        (("up", "--app", "raises_at_import", "--data-dir", "d"), "__init__.py:4: KeyError"),
    ],
    ids=["demo", "up --demo", "bench project", "up --app path", "up --app raising"],
)
def test_the_command_line_says_what_the_app_cannot_do_in_one_line_with_exit_2(
    apps: Path, args: tuple[str, ...], says: str
) -> None:
    done = _ironstar(apps, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert not (apps / "d").exists() or not any((apps / "d").iterdir())  # nothing started


def test_a_service_refuses_to_start_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ironstar", "writer"],
        env={"IRONSTAR_APP": "no_such_app", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ironstar writer: IRONSTAR_APP=no_such_app: cannot import it "
        "(No module named 'no_such_app')"
    ]


@pytest.mark.parametrize(
    "command", [("up",), ("cluster", "up", "--detach")], ids=["up", "cluster up"]
)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IRONSTAR_WRITER_CONCURRENCY", "-1"),  # a service `up` starts, not the gateway
        ("IRONSTAR_NATS_STREAM", ""),  # every service's
    ],
)
def test_a_command_starting_services_refuses_any_bad_setting_before_starting_anything(
    tmp_path: Path, command: tuple[str, ...], variable: str, value: str
) -> None:
    """verify12b F4: `up` checked only the gateway's settings itself; a writer's or a
    projector's bad one was refused by that service, after nats-server, the stream and
    files were made."""
    data = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": str(ROOT), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "ironstar", *command, "--data-dir", str(data)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert lines[-1].startswith("ironstar") and f"{variable}={value!r}: expected" in lines[-1]
    assert not data.exists() or not any(data.iterdir())  # nothing started, nothing made
