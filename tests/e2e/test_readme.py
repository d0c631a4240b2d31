"""The README's examples run as pasted, in order, against `ironstar up`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironstar.ports import free_port
from tests.support.up import ROOT, Up

pytestmark = pytest.mark.e2e


def _curl_example() -> list[str]:
    """The README's first shell block that POSTs a command: its commands, one per entry."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "curl -X POST" in b)
    joined = block.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.startswith("curl")]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "data", free_port(), tmp_path / "up.log").start()
    try:
        yield running.ready()
    finally:
        assert running.interrupt() == 0


def _run(line: str, port: int) -> str:
    command = line.replace("localhost:8000", f"localhost:{port}")
    if "curl -N" in command:  # a live feed runs until Ctrl-C: here, for 3 seconds
        command = command.replace("curl -N", "curl -N --max-time 3", 1)
    # POSIX sh (dash on Debian), as pasted into any shell: no bash-only $RANDOM.
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 28), f"{command}: {done.stderr}"  # 28: --max-time reached
    return done.stdout


def test_the_readme_curl_sequence_works_pasted_in_order_twice(up: Up) -> None:
    lines = _curl_example()
    assert len(lines) == 4 and lines[0].startswith("curl -X POST")
    for attempt in (1, 2):
        posted = json.loads(_run(lines[0], up.port))
        assert posted["events"][0]["event_type"] == "todo_added", posted
        # Read your write: min_seq is the sequence the POST answered (1 the first time).
        read_line = lines[1].replace("min_seq=1", f"min_seq={posted['sequence']}")
        read = json.loads(_run(read_line, up.port))
        assert len(read["result"]["items"]) == attempt
        for live in lines[2:]:
            shown = _run(live, up.port)
            assert "data:" in shown and "todo_added" in shown, f"{live} showed: {shown!r}"
