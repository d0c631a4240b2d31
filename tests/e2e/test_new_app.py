"""`ironstar new` to a running app, as docs/extending.md walks it: the same commands, run.

In an empty directory: `ironstar new billing` writes the package, its tests pass, and
`ironstar up --app billing` serves it: a command over HTTP, its SQL projection's query
(read your writes), the dashboard with the app's panel. With `--dir`, the next steps it
prints run as printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ironstar.natsserver import free_port
from tests.support.feeds import feed
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

# The shell steps of docs/extending.md (tests/unit/test_extending_doc.py holds the doc to
# these): each runs here, in the new app's directory.
NEW = "ironstar new billing"
TEST = "pytest billing"
UP = "ironstar up --app billing"
RECORD = (
    "curl -X POST localhost:8000/api/commands/billing/acme "
    """-H 'Content-Type: application/json' -d '{"type": "record", "payload": {"amount": 42}}'"""
)
READ = "curl 'localhost:8000/api/read/billing_totals/total?id=acme&min_seq=1'"
STEPS = (NEW, TEST, UP, RECORD, READ)


def _ironstar(command: str) -> list[str]:
    return [sys.executable, "-m", "ironstar", *shlex.split(command)[1:]]


@pytest.fixture
def billing(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`ironstar new billing`, its tests, then `ironstar up --app billing` in that directory."""
    made = subprocess.run(_ironstar(NEW), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "2 files" in made.stdout
    tests = subprocess.run(
        [sys.executable, "-m", *shlex.split(TEST), "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    port = free_port()
    options = ["--data-dir", str(tmp_path / "data"), "--http-port", str(port)]
    options += ["--nats-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k != "IRONSTAR_APP"}
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            _ironstar(UP) + options, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    yield up, f"http://127.0.0.1:{port}"
    up.send_signal(signal.SIGINT)
    try:
        up.wait(30)
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait()


async def test_a_new_app_passes_its_tests_and_runs_with_ironstar_up(
    billing: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    up, base = billing
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:

        async def health() -> int:
            assert up.poll() is None, "ironstar up exited; see up.log"
            try:
                return (await http.get("/readyz")).status_code
            except httpx.TransportError:
                return 0

        await eventually(health, lambda status: status == 200, timeout=60)
        body = {"type": "record", "payload": {"amount": 42}}
        recorded = await eventually(
            lambda: http.post("/api/commands/billing/acme", json=body),
            lambda reply: reply.status_code != 503,  # until the writer subscribed
            timeout=30,
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json()["sequence"] == 1  # the first event of a new stack
        read = await eventually(  # as the doc; until the gateway heard of the projector
            lambda: http.get(shlex.split(READ)[1].removeprefix("localhost:8000")),
            lambda reply: reply.status_code != 503,
            timeout=30,
        )
        assert read.json().get("result") == {"id": "acme", "amount": 42, "entries": 1}, read.text
        page = (await http.get("/")).text
        assert 'id="billing-log"' in page and "<li>acme: 42</li>" in page
        # the live view the page follows as events come, and the panel whole after a snapshot
        async with asyncio.timeout(15), http.stream("GET", "/ui/live/billing/totals") as live:
            assert live.status_code == 200
            async for line in live.aiter_lines():
                if "<li>acme: 42</li>" in line:
                    break
        assert "<li>acme: 42</li>" in (await http.get("/ui/panels/billing")).text
        # an unresumable position on the whole type: a snapshot of every billing account
        async with feed(http, {"Last-Event-ID": "99999999"}, topics="billing") as reader:
            snapshot = (await reader.until("snapshot"))[-1]
        assert snapshot.data == {"billing": [{"id": "acme", "amount": 42, "entries": 1}]}
    _the_cli_elsewhere_uses_the_running_app(tmp_path / "data")


def _the_cli_elsewhere_uses_the_running_app(data: Path) -> None:
    """From a directory where `billing` cannot be imported and IRONSTAR_APP is the example,
    `status --data-dir` probes billing's writer and `demo --data-dir` billing's script."""
    elsewhere = data.parent / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "IRONSTAR_APP": "examples.todo"}
    run = [sys.executable, "-m", "ironstar"]
    status = subprocess.run(
        [*run, "status", "--json", "--data-dir", str(data)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    state = json.loads(status.stdout)
    assert state["writer"]["up"] is True, status.stdout
    assert status.returncode == 0, status.stdout
    demo = subprocess.run(
        [*run, "demo", "--duration", "2", "--data-dir", str(data)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    said = demo.stdout + demo.stderr
    assert "app billing declares no demo traffic" in said, said  # not the example's todo traffic
    assert "todo_list" not in said


def test_the_next_steps_printed_for_another_directory_run_as_printed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IRONSTAR_APP"}
    made = subprocess.run(
        [sys.executable, "-m", "ironstar", "new", "ledger", "--dir", "apps"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    steps = made.stdout.rsplit("next: ", 1)[1].strip()
    assert steps == "cd apps && pytest ledger && ironstar up --app ledger"
    # every step but the last (`up` runs until stopped) as printed; then the app loads there
    load = "python -c 'from common import catalogue; catalogue.install(catalogue.load(\"ledger\"))'"
    shell = steps.replace(
        "pytest", f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"
    )
    shell = shell.replace(
        "ironstar up --app ledger", load.replace("python", shlex.quote(sys.executable))
    )
    done = subprocess.run(
        ["sh", "-c", shell], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
