"""The rebuild's progress bar says nothing it does not know."""

from __future__ import annotations

import pytest

from ironstar.commands.rebuild import _bar


def test_before_the_total_is_known_the_bar_says_starting_not_zero_of_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _bar({"total": 0, "done": 0, "state": "running"})
    shown = capsys.readouterr().err
    assert "starting" in shown and "0/1" not in shown


def test_once_known_the_bar_counts_against_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    _bar({"total": 4, "done": 1, "state": "running", "rate": 10.0, "eta_s": 0.3})
    assert "1/4 events" in capsys.readouterr().err
