"""The helper that fetches the official Datastar bundle for the browser tests: it works on
this Python (3.11 included), and under CI a download that cannot happen is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import download_bundle

UNREACHABLE = ("--index-url", "http://127.0.0.1:9/simple/", "--retries", "0", "--timeout", "2")


def test_the_bundle_downloads_on_this_python(bundle: bytes) -> None:
    assert b"Datastar v1.0.1" in bundle


def test_an_unreachable_index_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(pytest.fail.Exception, match="cannot download starhtml"):
        download_bundle(tmp_path, *UNREACHABLE)


def test_an_unreachable_index_skips_outside_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(pytest.skip.Exception, match="cannot download starhtml"):
        download_bundle(tmp_path, *UNREACHABLE)
