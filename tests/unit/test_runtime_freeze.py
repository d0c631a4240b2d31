"""A service's start-up objects are frozen once it is ready (`common/runtime.py`), so the
full collections of a long run do not scan them again."""

from __future__ import annotations

import subprocess
import sys

SERVICE = """
import asyncio, gc
from common.runtime import run

async def main(ready, stop):
    before = gc.get_freeze_count()
    ready("serving")
    print(before, gc.get_freeze_count())

raise SystemExit(run("test", main))
"""


def test_what_start_up_made_is_frozen_once_the_service_is_ready() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVICE], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = map(int, done.stdout.split()[-2:])
    assert before == 0 and after > 0, done.stdout
