"""What runs leave in the working tree stays out of git: data dirs, caches, screenshots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)


@pytest.mark.parametrize(
    "path",
    [
        ".ironstar/up.json",
        ".ironstar-cluster/cluster.json",
        ".ironstar-2/ironstar.lock",
        ".schemathesis/default/cache/crashes/manifest.json",
        "test-artifacts/dashboard-390.png",
    ],
)
def test_files_that_runs_write_are_ignored_by_git(path: str) -> None:
    done = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert done.returncode == 0, f"{path} is not ignored"


def test_no_run_output_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", ".schemathesis", ".ironstar", ".ironstar-cluster", "test-artifacts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tracked == "", tracked
