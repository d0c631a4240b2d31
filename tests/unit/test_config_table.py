"""README's configuration table lists every variable `ironstar config` prints, IRONSTAR_APP
first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ironstar.cli import main

README = Path(__file__).parents[2] / "README.md"


def test_every_variable_ironstar_config_prints_is_in_the_readme_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config"]) == 0
    printed = re.findall(r"^\| `(IRONSTAR_\w+)` ", capsys.readouterr().out, re.M)
    documented = re.findall(r"^\| `(IRONSTAR_\w+)` ", README.read_text(), re.M)
    assert printed[0] == "IRONSTAR_APP"
    assert [v for v in printed if v not in documented] == []
