"""`ironstar bench project` on a small history: every phase runs over real processes (a
nats-server, a projector, its feed process) and the live tail is printed beside its
floor, both from the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def test_bench_project_prints_the_tail_beside_its_floor_and_its_batches(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ironstar", "bench", "project", "--json", "--events", "2000",
         "--tail-seconds", "1", "--tail-rate", "100"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["events"] == 2000
    assert figures["tail_timed_events"] == 10  # one in 10 of 100 events timed
    assert figures["goal_tail_p99_ms"] == 20
    # the floor: each of the first tail events applied alone, after the whole history
    assert 0 < figures["tail_floor_p50_ms"] <= figures["tail_floor_p99_ms"]
    # the projector's own word on the tail's batches: at 100 /s, each holds a few events
    assert 1 <= figures["tail_batches"] <= 100
    assert 1 <= figures["tail_batch_events_p50"] <= 100
    assert 0 < figures["tail_batch_apply_p50_ms"] <= figures["tail_batch_apply_p99_ms"]
    assert figures["tail_applying_share"] > 0
    assert figures["tail_p50_ms"] <= figures["tail_p99_ms"]
    assert not list(tmp_path.iterdir())  # the run's temp dir is gone
